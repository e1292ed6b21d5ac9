"""``labformer doctor``: what this machine is, how fast a training step runs here in float32 and bf16, and
whether a bf16 path of the defaults would be slow on this CPU.

The timings are printed for the user; they decide nothing. ``--amp auto`` and ``--muon-precision auto``
are decided from facts by :mod:`labformer.training.runtime`; :func:`amp_choice` and
:func:`~labformer.training.runtime.muon_precision_choice` say which and why.
"""

from __future__ import annotations

import dataclasses
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

from labformer.models.gpt import GPT, GPTConfig
from labformer.models.vit import ViT
from labformer.training.classify import preset_configs
from labformer.training.language import gpt_optimizer
from labformer.training.optim import build_optimizer
from labformer.training.recipes import gpt_configs
from labformer.training.runtime import autocast, cpu_info, muon_precision_choice, resolve_amp

__all__ = [
    "SLOW",
    "StepTiming",
    "TrainingStep",
    "amp_choice",
    "check_seconds",
    "default_gpt_step",
    "facts",
    "fast_vit_step",
    "format_report",
    "run",
    "time_optimizer",
    "time_steps",
    "training_step",
    "warnings",
]

# A bf16 path is called slow here when it takes this many times the float32 time or more.
SLOW = 1.25


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
        "cpu_bf16_units": cpu.bf16_units,
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
    """Mean wall time of one training step under a precision, over ``steps`` timed steps, and of its
    optimiser step alone."""

    amp: str
    seconds_per_step: float
    steps: int
    loss: float
    optimizer_seconds: float = 0.0


class TrainingStep:
    """``step(amp) -> loss``: one training step (forward, loss, backward, optimiser) of ``model`` on one
    fixed batch, under ``amp`` ("none" or "bf16"). The model and optimiser persist across calls;
    ``optimizer_seconds`` adds up the time spent in ``optimizer.step()``."""

    def __init__(
        self,
        model: nn.Module,
        inputs: Tensor,
        targets: Tensor,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        optimizer: Any = None,  # noqa: ANN401 - an Optimizer or labformer's ChainedOptimizer
    ) -> None:
        self.model, self.inputs, self.targets, self.loss_fn = model, inputs, targets, loss_fn
        self.optimizer = optimizer if optimizer is not None else build_optimizer(model, 1e-3, 0.05)
        self.optimizer_seconds = 0.0

    def __call__(self, amp: str) -> float:
        with autocast(self.inputs.device, amp):
            loss = self.loss_fn(self.model(self.inputs).float(), self.targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _sync(self.inputs.device)
        started = time.perf_counter()
        self.optimizer.step()
        _sync(self.inputs.device)
        self.optimizer_seconds += time.perf_counter() - started
        return loss.item()  # .item() waits for the GPU: the step is over when it returns


def training_step(
    model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> TrainingStep:
    """:class:`TrainingStep` with AdamW (lr 1e-3, weight decay 0.05)."""
    return TrainingStep(model, inputs, targets, loss_fn)


def fast_vit_step(device: torch.device, batch_size: int = 128) -> TrainingStep:
    """:class:`TrainingStep` of the ``fast`` preset's ViT on a random batch of 28×28 images."""
    torch.manual_seed(0)
    model = ViT(preset_configs("fast", "mnist", {}, {})[0]).to(device)
    images = torch.randn(batch_size, 1, 28, 28, device=device)
    return training_step(model, images, torch.randint(0, 10, (batch_size,), device=device), F.cross_entropy)


def default_gpt_step(
    device: torch.device, optimizer: str | None = None, muon_precision: str = "auto", vocab_size: int = 65
) -> TrainingStep:
    """:class:`TrainingStep` of ``labformer train gpt``'s default: the ``cpu`` preset's GPT, its optimiser
    (Muon + AdamW, or ``optimizer`` instead) and learning settings, on one random batch of 32 windows of 128
    characters (Tiny Shakespeare has 65). ``muon_precision`` as ``--muon-precision`` ("auto" resolved here)."""
    model_values, config = gpt_configs("cpu", {}, {} if optimizer is None else {"optimizer": optimizer})
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, **model_values)).to(device)
    tokens = torch.randint(0, vocab_size, (config.batch_size, model.config.block_size + 1), device=device)
    chosen = gpt_optimizer(model, dataclasses.replace(config, muon_precision=muon_precision), device)
    loss = lambda logits, y: F.cross_entropy(logits.flatten(0, 1), y.flatten())  # noqa: E731
    return TrainingStep(model, tokens[:, :-1], tokens[:, 1:], loss, chosen)


def time_steps(step: Callable[[str], float], amp: str, seconds: float, warmup: int = 2) -> StepTiming:
    """Runs ``step(amp)`` ``warmup`` times, then as often as fits in ``seconds`` (at least 3 times)."""
    for _ in range(warmup):
        step(amp)
    count, loss = 0, float("nan")
    spent_before = getattr(step, "optimizer_seconds", 0.0)
    started = time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        loss = step(amp)
        count += 1
    optimizer = (getattr(step, "optimizer_seconds", 0.0) - spent_before) / count
    return StepTiming(amp, (time.perf_counter() - started) / count, count, loss, optimizer)


def time_optimizer(step: TrainingStep, seconds: float, warmup: int = 1) -> float:
    """Mean seconds of ``step.optimizer.step()`` alone on the gradients of one step (the weights move; the
    gradients stay): at least 3 calls, as many as fit in ``seconds``."""
    step("none")
    for _ in range(warmup):
        step.optimizer.step()
    count, started = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        step.optimizer.step()
        count += 1
    _sync(step.inputs.device)
    return (time.perf_counter() - started) / count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: torch.device, seconds: float = 5.0) -> dict[str, Any]:
    """The doctor's report as data: facts, the float32 / bf16 ViT step timings, the default GPT step and its
    optimiser step (Muon's orthogonalisation in float32 and in bf16), the ``auto`` choices and warnings."""
    report = facts(device)
    amp, why = amp_choice(device)
    report["amp_auto"], report["amp_auto_why"] = amp, why
    report["muon_precision_auto"], report["muon_precision_auto_why"] = muon_precision_choice(device)
    share = seconds / 4
    step = fast_vit_step(device)
    precisions = ["none", "bf16"] if device.type == "cpu" or report["cuda_bf16"] else ["none"]
    timings = [time_steps(step, p, share / len(precisions)) for p in precisions]
    report["vit_fast_step"] = {t.amp: {"ms": 1000 * t.seconds_per_step, "steps": t.steps} for t in timings}
    gpt_step = default_gpt_step(device)
    gpt = time_steps(gpt_step, "none", share)
    report["gpt_default_step"] = {
        "ms": 1000 * gpt.seconds_per_step,
        "optimizer_ms": 1000 * gpt.optimizer_seconds,
        "steps": gpt.steps,
        "batch": list(gpt_step.inputs.shape),
        "tokens_per_second": gpt_step.inputs.numel() / gpt.seconds_per_step,
        "muon_precision": report["muon_precision_auto"],
    }
    muon = ["float32", "bf16"] if device.type == "cpu" or report["cuda_bf16"] else ["float32"]
    report["muon_optimizer_step_ms"] = {
        precision: 1000 * time_optimizer(default_gpt_step(device, muon_precision=precision), share / len(muon))
        for precision in muon
    }
    report["warnings"] = warnings(report)
    return report


def warnings(report: dict[str, Any]) -> list[str]:
    """Plain sentences for each bf16 path that measured slow here (:data:`SLOW`× the float32 time or more)."""
    said, here = [], "this GPU" if str(report.get("device", "cpu")).startswith("cuda") else "this CPU"
    vit = report["vit_fast_step"]
    if "bf16" in vit and vit["bf16"]["ms"] >= SLOW * vit["none"]["ms"]:
        auto = "--amp auto uses float32 here" if report["amp_auto"] == "none" else "avoid --amp bf16 here"
        said.append(
            f"bf16 autocast is slow on {here}: a ViT step takes {vit['bf16']['ms'] / vit['none']['ms']:.1f}x "
            f"its float32 time ({auto})"
        )
    muon = report["muon_optimizer_step_ms"]
    if "bf16" in muon and muon["bf16"] >= SLOW * muon["float32"]:
        auto = "--muon-precision auto uses float32 here"
        if report["muon_precision_auto"] == "bf16":
            auto = "pass --muon-precision float32"
        said.append(
            f"Muon in bf16 is slow on {here}: its optimiser step takes {muon['bf16'] / muon['float32']:.1f}x "
            f"the float32 time ({auto})"
        )
    return said


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
    gpt = report["gpt_default_step"]
    batch = " x ".join(map(str, gpt["batch"]))
    rows.append((
        "GPT default step",
        f"{gpt['ms']:.1f} ms ({gpt['tokens_per_second']:,.0f} tokens/s; batch {batch}, Muon in "
        f"{gpt['muon_precision']}, {gpt['steps']} steps), of which the optimiser {gpt['optimizer_ms']:.1f} ms",
    ))  # fmt: skip
    muon = report["muon_optimizer_step_ms"]
    rows.append(("Muon optimiser step", ", ".join(f"{p} {ms:.1f} ms" for p, ms in muon.items())))
    rows.append(("--muon-precision auto", f"{report['muon_precision_auto']}: {report['muon_precision_auto_why']}"))
    quiet = [("warnings", "none: no bf16 path measured slow here")]
    rows += [("warning", line) for line in report["warnings"]] or quiet
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def check_seconds(seconds: float) -> float:
    """``seconds`` if it is a usable measuring time, else a ValueError naming it."""
    if not 0 < seconds <= 600:
        raise ValueError(f"--seconds must be in (0, 600]; got {seconds}")
    return seconds
