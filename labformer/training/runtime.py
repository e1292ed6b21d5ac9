"""Where and how training runs: device choice, bf16 autocast, torch.compile, run directories."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["autocast", "cpu_has_native_bf16", "maybe_compile", "new_run_dir", "resolve_amp", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """ "auto" (CUDA if available, else CPU), "cpu" or "cuda"; a clear error when CUDA is missing."""
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
        raise ValueError(f"amp must be 'none', 'bf16' or 'auto'; got {amp!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX-BF16 or AVX512-BF16), read at run time."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _bf16_matmul_is_faster(dim: int) -> bool:
    """Times a (4096 x dim) @ (dim x 4·dim) product in float32 and under bf16 autocast on the CPU.

    Small matrices lose to the casts (a dim-64 ViT measured ~4x slower in bf16 on an AMX CPU), large
    ones win: the crossover depends on the machine, so it is measured rather than assumed.
    """
    x, w = torch.randn(4096, dim), torch.randn(dim, 4 * dim)

    def best(use_bf16: bool) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                x @ w
            times.append(time.perf_counter() - start)
        return min(times[1:])

    return best(True) < 0.8 * best(False)


def resolve_amp(amp: str, device: torch.device, dim: int) -> str:
    """ "auto" -> "bf16" where it helps (CUDA with bf16; a CPU with native bf16 where a probe at the
    model's width is faster), else "none". An explicit "bf16" the device cannot run is an error."""
    if amp not in ("auto", "none", "bf16"):
        raise ValueError(f"amp must be 'none', 'bf16' or 'auto'; got {amp!r}")
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if amp == "bf16" and not supported:
            raise ValueError("--amp bf16 is unavailable: this GPU does not support bfloat16")
        return "bf16" if amp == "auto" and supported else amp if amp != "auto" else "none"
    if amp == "auto":
        return "bf16" if cpu_has_native_bf16() and _bf16_matmul_is_faster(dim) else "none"
    return amp


def maybe_compile(model: nn.Module, compile_model: bool, device: torch.device | None = None) -> nn.Module:
    """``torch.compile(model)`` if asked; a clear error where it cannot work (no C++ compiler on CPU)."""
    if not compile_model:
        return model
    if (device is None or device.type == "cpu") and not (shutil.which("c++") or shutil.which("g++")):
        raise ValueError("--compile is unavailable here: torch.compile needs a C++ compiler (c++ or g++) on CPU")
    return torch.compile(model)  # type: ignore[return-value]


def new_run_dir(out: str | Path | None, name: str) -> Path:
    """``out`` or ``runs/<timestamp>-<name>``, created; refuses a directory that already holds a run."""
    path = Path(out) if out is not None else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    if (path / "config.json").exists():
        raise ValueError(
            f"run directory {path} already holds a run; pass --resume {path} to continue it or choose another --out"
        )
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
