"""`labformer doctor` and `labformer --version`: facts about this machine, and a float32 / bf16 timing."""

from __future__ import annotations

import json
import platform

import pytest
import torch

import labformer
from labformer.cli import main
from labformer.training.runtime import cpu_info


def test_doctor_reports_the_machine_and_both_precisions(capsys):
    assert main(["doctor", "--device", "cpu", "--seconds", "0.4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labformer"] == labformer.__version__ and report["torch"] == torch.__version__
    assert report["python"] == platform.python_version()
    assert report["cpu"] == cpu_info().model and report["cpu_features"] == cpu_info().features
    assert report["torch_threads"] == torch.get_num_threads()
    assert report["cuda_bf16"] is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert report["amp_auto"] == "none" and "float32" in report["amp_auto_why"]
    steps = report["vit_fast_step"]
    assert set(steps) == {"none", "bf16"} and all(s["ms"] > 0 and s["steps"] >= 3 for s in steps.values())


def test_doctor_text(capsys):
    assert main(["doctor", "--device", "cpu", "--seconds", "0.4"]) == 0
    out = capsys.readouterr().out
    for label in ("CPU features", "threads", "CUDA", "ViT fast step, float32", "ViT fast step, bf16 autocast"):
        assert label in out
    assert "bf16 speed-up here" in out and "--amp auto                    float32: on a CPU" in out


@pytest.mark.parametrize("seconds", ["0", "-1", "1000"])
def test_doctor_bad_seconds(seconds, capsys):
    assert main(["doctor", "--seconds", seconds]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"labformer: error: --seconds must be in (0, 600]; got {float(seconds)}"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"labformer {labformer.__version__} (torch {torch.__version__}, Python {platform.python_version()})"
    )
