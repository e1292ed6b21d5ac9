"""``labformer doctor``: what this machine is, and how fast a training step runs here in float32 and bf16.

The timings are printed for the user; they decide nothing. ``--amp auto`` is decided from facts by
:func:`labformer.training.runtime.resolve_amp`, and :func:`amp_choice` says which and why.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer.models.vit import ViT
from labformer.training.classify import preset_configs
from labformer.training.optim import build_optimizer
from labformer.training.runtime import autocast, cpu_info, resolve_amp

__all__ = [
    "StepTiming",
    "amp_choice",
    "check_seconds",
    "facts",
    "fast_vit_step",
    "format_report",
    "run",
    "time_steps",
    "training_step",
]


def facts(device: torch.device) -> dict[str, Any]:
    """Versions, the CPU and its features, threads, CUDA and its bf16 support."""
    from labformer import __version__

    cpu = cpu_info()
    cuda = torch.cuda.is_available()
    return {
        "labformer": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu": cpu.model,
        "cpu_features": cpu.features,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cuda_bf16": bool(cuda and torch.cuda.is_bf16_supported()),
    }


def amp_choice(device: torch.device) -> tuple[str, str]:
    """What ``--amp auto`` trains in on ``device``, and why (in words)."""
    amp = resolve_amp("auto", device)
    if device.type == "cuda":
        why = "this GPU supports bfloat16" if amp == "bf16" else "this GPU does not support bfloat16"
    else:
        why = (
            "on a CPU auto always trains in float32: whole training steps measured slower in bf16 on every CPU "
            "measured (benchmarks/amp.py); pass --amp bf16 to choose it yourself"
        )
    return amp, why


@dataclass
class StepTiming:
    """Mean wall time of one training step under a precision, over ``steps`` timed steps."""

    amp: str
    seconds_per_step: float
    steps: int
    loss: float


def training_step(
    model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[str], float]:
    """``step(amp) -> loss``: one training step (forward, loss, backward, AdamW) of ``model`` on one fixed
    batch, under ``amp`` ("none" or "bf16"). The model and optimiser persist across calls."""
    device = inputs.device
    optimizer = build_optimizer(model, 1e-3, 0.05)

    def step(amp: str) -> float:
        with autocast(device, amp):
            loss = loss_fn(model(inputs).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()  # .item() waits for the GPU: the step is over when it returns

    return step


def fast_vit_step(device: torch.device, batch_size: int = 128) -> Callable[[str], float]:
    """:func:`training_step` of the ``fast`` preset's ViT on a random batch of 28×28 images."""
    torch.manual_seed(0)
    model = ViT(preset_configs("fast", "mnist", {}, {})[0]).to(device)
    images = torch.randn(batch_size, 1, 28, 28, device=device)
    return training_step(model, images, torch.randint(0, 10, (batch_size,), device=device), F.cross_entropy)


def time_steps(step: Callable[[str], float], amp: str, seconds: float, warmup: int = 2) -> StepTiming:
    """Runs ``step(amp)`` ``warmup`` times, then as often as fits in ``seconds`` (at least 3 times)."""
    for _ in range(warmup):
        step(amp)
    count, loss = 0, float("nan")
    started = time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        loss = step(amp)
        count += 1
    return StepTiming(amp, (time.perf_counter() - started) / count, count, loss)


def run(device: torch.device, seconds: float = 5.0) -> dict[str, Any]:
    """The doctor's report as data: facts, the float32 / bf16 step timings and the ``auto`` choice."""
    report = facts(device)
    amp, why = amp_choice(device)
    report["amp_auto"], report["amp_auto_why"] = amp, why
    step = fast_vit_step(device)
    precisions = ["none", "bf16"] if device.type == "cpu" or report["cuda_bf16"] else ["none"]
    timings = [time_steps(step, p, seconds / len(precisions)) for p in precisions]
    report["vit_fast_step"] = {t.amp: {"ms": 1000 * t.seconds_per_step, "steps": t.steps} for t in timings}
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`run` as aligned lines for a terminal."""
    gpus = ", ".join(report["gpus"]) or "none"
    rows = [
        ("labformer", report["labformer"]),
        ("torch", report["torch"]),
        ("Python", f"{report['python']} ({sys.executable})"),
        ("platform", report["platform"]),
        ("device", report["device"]),
        ("CPU", report["cpu"]),
        ("CPU features", report["cpu_features"]),
        ("torch CPU kernels", report["torch_cpu_capability"]),
        ("threads", f"{report['torch_threads']} torch threads on {report['cpu_cores']} cores"),
        (
            "CUDA",
            f"{report['cuda']} ({gpus}); bf16: {'yes' if report['cuda_bf16'] else 'no'}" if report["cuda"] else "no",
        ),
    ]
    steps = report["vit_fast_step"]
    for amp, timing in steps.items():
        name = "float32" if amp == "none" else "bf16 autocast"
        rows.append((f"ViT fast step, {name}", f"{timing['ms']:.1f} ms (batch 128, {timing['steps']} steps)"))
    if "bf16" in steps:
        ratio = steps["none"]["ms"] / steps["bf16"]["ms"]
        rows.append(("bf16 speed-up here", f"{ratio:.2f}x ({'faster' if ratio > 1 else 'slower'} than float32)"))
    auto = "float32" if report["amp_auto"] == "none" else "bf16"
    rows.append(("--amp auto", f"{auto}: {report['amp_auto_why']}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def check_seconds(seconds: float) -> float:
    """``seconds`` if it is a usable measuring time, else a ValueError naming it."""
    if not 0 < seconds <= 600:
        raise ValueError(f"--seconds must be in (0, 600]; got {seconds}")
    return seconds
