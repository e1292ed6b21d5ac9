"""`labformer doctor` and `labformer --version`: facts about this machine, and a float32 / bf16 timing."""

from __future__ import annotations

import json
import platform

import pytest
import torch

import labformer
from labformer import doctor
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
    assert report["cpu_bf16_units"] is cpu_info().bf16_units
    assert report["muon_precision_auto"] == "float32" and "float32 on every CPU" in report["muon_precision_auto_why"]
    gpt = report["gpt_default_step"]
    assert gpt["muon_precision"] == "float32" and gpt["steps"] >= 3
    assert 0 < gpt["optimizer_ms"] < gpt["ms"]  # the optimiser is a part of the step
    assert gpt["tokens_per_second"] == pytest.approx(32 * 128 / (gpt["ms"] / 1000))
    assert set(report["muon_optimizer_step_ms"]) == {"float32", "bf16"}
    assert report["warnings"] == doctor.warnings(report)  # the sentences follow the numbers


def report_with(vit: tuple[float, float], muon: tuple[float, float], muon_auto: str = "float32") -> dict:
    return {
        "device": "cuda:0" if muon_auto == "bf16" else "cpu",
        "vit_fast_step": {"none": {"ms": vit[0]}, "bf16": {"ms": vit[1]}},
        "amp_auto": "none",
        "muon_optimizer_step_ms": {"float32": muon[0], "bf16": muon[1]},
        "muon_precision_auto": muon_auto,
    }


def test_doctor_says_plainly_which_bf16_path_is_slow_here():
    # The AVX2-only AMD EPYC: bf16 emulated (ViT step 7.7x, Newton-Schulz 27x slower).
    slow = doctor.warnings(report_with((30.0, 231.0), (16.0, 432.0)))
    assert slow == [
        "bf16 autocast is slow on this CPU: a ViT step takes 7.7x its float32 time (--amp auto uses float32 here)",
        "Muon in bf16 is slow on this CPU: its optimiser step takes 27.0x the float32 time "
        "(--muon-precision auto uses float32 here)",
    ]
    assert doctor.warnings(report_with((30.0, 33.0), (16.0, 14.0))) == []  # bf16 units: nothing to say
    gpu = doctor.warnings(report_with((30.0, 20.0), (16.0, 40.0), muon_auto="bf16"))
    assert gpu == ["Muon in bf16 is slow on this GPU: its optimiser step takes 2.5x the float32 time "
                   "(pass --muon-precision float32)"]  # fmt: skip


def test_doctor_text(capsys):
    assert main(["doctor", "--device", "cpu", "--seconds", "0.4"]) == 0
    out = capsys.readouterr().out
    for label in ("CPU features", "threads", "CUDA", "ViT fast step, float32", "ViT fast step, bf16 autocast"):
        assert label in out
    assert "bf16 speed-up here" in out and "--amp auto             " in out
    for label in ("GPT default step", "Muon optimiser step", "--muon-precision auto", "float32: float32 on every CPU"):
        assert label in out


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
