"""Where and how training runs: device choice, bf16 autocast, torch.compile, run directories."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["autocast", "maybe_compile", "new_run_dir", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """"auto" (CUDA if available, else CPU), "cpu" or "cuda"; a clear error when CUDA is missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available on this machine")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {name!r}")
    return torch.device(name)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``amp`` is "bf16"; nothing when "none"."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ValueError(f"amp must be 'none' or 'bf16'; got {amp!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def maybe_compile(model: nn.Module, compile_model: bool) -> nn.Module:
    if not compile_model:
        return model
    try:
        return torch.compile(model)  # type: ignore[return-value]
    except RuntimeError as error:  # e.g. no C++ compiler / unsupported Python
        raise ValueError(f"--compile is unavailable here: {error}") from None


def new_run_dir(out: str | Path | None, name: str) -> Path:
    """``out`` or ``runs/<timestamp>-<name>``, created; refuses a directory that already holds a run."""
    path = Path(out) if out is not None else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    if (path / "config.json").exists():
        raise ValueError(f"run directory {path} already holds a run; pass --resume {path} to continue it "
                         "or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create run directory {path}: {error.strerror or error}") from None
    return path


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """Yields a one-element list that holds the elapsed seconds once the block ends."""
    elapsed = [0.0]
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - start
