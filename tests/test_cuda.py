"""The CUDA path: a few steps of both models on a GPU in float32 and bf16, an exact resume, and doctor.

Skipped without a CUDA GPU (CI has none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import CtrlC

import labformer
from labformer.cli import main
from labformer.training import classify, language

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY_VIT = dict(dim=32, depth=2, num_heads=4, mlp_dim=64)
TINY_GPT = dict(block_size=32, dim=32, depth=2, num_heads=4, mlp_dim=64)


def vit_configs(amp: str, epochs: int = 2):
    return classify.preset_configs(
        "fast", "mnist", TINY_VIT, dict(epochs=epochs, batch_size=50, device="cuda", amp=amp, augment="affine")
    )


@pytest.mark.parametrize("amp", ["none", "bf16", "auto"])
def test_vit_trains_on_cuda(tmp_path, tiny_digits, amp):
    model_config, config = vit_configs(amp)
    metrics = classify.train_classifier(model_config, config, out=tmp_path / "run", data=tiny_digits, progress=False)
    resolved = "bf16" if amp == "auto" and torch.cuda.is_bf16_supported() else ("none" if amp == "auto" else amp)
    assert metrics["device"].startswith("cuda") and metrics["amp"] == resolved
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["amp"] == resolved
    assert math.isfinite(metrics["test_loss"]) and metrics["test_accuracy"] > 0.2  # 10 classes: chance is 0.1
    model = labformer.load(tmp_path / "run", device="cuda")
    assert next(model.parameters()).is_cuda
    with torch.no_grad():
        assert model(torch.randn(3, 1, 28, 28, device="cuda")).shape == (3, 10)


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_gpt_trains_on_cuda(tmp_path, amp):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 300)
    values, config = language.preset_configs(
        "cpu",
        TINY_GPT,
        dict(text=str(corpus), iters=40, batch_size=16, eval_interval=20, eval_iters=4, device="cuda", amp=amp),
    )
    metrics = language.train_language_model(values, config, out=tmp_path / "run", progress=False)
    assert metrics["device"].startswith("cuda") and metrics["amp"] == amp and metrics["iters"] == 40
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # it learns
    assert (tmp_path / "run" / "sample.txt").read_text()


def test_resume_on_cuda_continues_exactly(tmp_path, tiny_digits):
    model_config, config = vit_configs("none", epochs=3)
    full = classify.train_classifier(model_config, config, out=tmp_path / "full", data=tiny_digits, progress=False)
    with pytest.raises(KeyboardInterrupt):
        cut = [CtrlC(evaluation=2)]
        classify.train_classifier(
            model_config, config, out=tmp_path / "cut", data=tiny_digits, progress=False, callbacks=cut
        )
    resumed = classify.train_classifier(
        None, classify.ClassifyConfig(device="cuda"), resume=tmp_path / "cut", data=tiny_digits, progress=False
    )
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], abs=1e-5)
    a, b = (labformer.load(tmp_path / run).state_dict() for run in ("full", "cut"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def test_doctor_on_cuda(capsys):
    assert main(["doctor", "--device", "cuda", "--seconds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"].startswith("cuda") and report["gpus"] and report["cuda"]
    assert report["amp_auto"] == ("bf16" if report["cuda_bf16"] else "none")
    assert set(report["vit_fast_step"]) == ({"none", "bf16"} if report["cuda_bf16"] else {"none"})


def test_randaugment_on_the_gpu_computes_what_it_computes_on_the_cpu():
    """The same operations at the same magnitudes give the same pictures on both devices."""
    from labformer.data.randaugment import OPERATIONS, apply_operation

    pictures = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    magnitudes = torch.linspace(-0.9, 0.9, 16, dtype=torch.float64)
    for name in OPERATIONS:
        values = magnitudes * (30 if name == "Rotate" else 1) if name not in ("Posterize", "Solarize") else None
        if name == "Posterize":
            values = torch.full((16,), 6.0, dtype=torch.float64)
        if name == "Solarize":
            values = torch.full((16,), 128.0, dtype=torch.float64)
        cpu = apply_operation(name, pictures, values)
        gpu = apply_operation(name, pictures.cuda(), values.cuda()).cpu()
        assert (cpu.int() - gpu.int()).abs().max() <= 1, name  # the smoothing convolution may round apart
