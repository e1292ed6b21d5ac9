"""``--device`` of the commands that load a model: auto, cpu, cuda, cuda:N; Apple's mps refused with a reason."""

from __future__ import annotations

import pytest
import torch

from labformer.cli import main
from labformer.device import resolve_device
from labformer.serve.models import PRETRAINED


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "mps",
            "--device mps (Apple GPUs) is not supported: labformer runs on the CPU or a CUDA GPU; pass --device cpu",
        ),
        ("tpu", "--device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
        ("cuda:x", "--device must be auto, cpu, cuda or cuda:N; got 'cuda:x'"),
    ],
)
def test_unsupported_devices_say_why(name, message):
    with pytest.raises(ValueError) as error:
        resolve_device(name)
    assert str(error.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_missing_gpu_is_one_clear_line(name, capsys):
    with pytest.raises(ValueError, match=f"--device {name} was asked for but no CUDA GPU is available"):
        resolve_device(name)
    assert main(["generate", str(PRETRAINED / "text"), "--device", name, "--tokens", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"labformer: error: --device {name} was asked for but no CUDA GPU is available on this machine"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_n_names_a_gpu():
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"this machine has {count} CUDA GPU"):
        resolve_device(f"cuda:{count}")
