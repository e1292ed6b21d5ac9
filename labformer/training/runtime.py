"""Where and how training runs: device choice, bf16 autocast, torch.compile, run directories."""

from __future__ import annotations

import contextlib
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from labformer import runs

__all__ = [
    "AMP_CHOICES",
    "AMP_HELP",
    "CpuInfo",
    "MUON_PRECISION_CHOICES",
    "MUON_PRECISION_HELP",
    "autocast",
    "cpu_info",
    "maybe_compile",
    "new_run_dir",
    "removed_if_empty_on_failure",
    "muon_precision_choice",
    "resolve_amp",
    "resolve_muon_precision",
]

AMP_CHOICES = ("auto", "none", "bf16", "bf16-ff")  # "none" = float32
AMP_HELP = (
    "precision: none = float32, bf16 = bf16 autocast, bf16-ff = bf16 in the feed-forward blocks only (faster "
    "than float32 for the GPT on AMX CPUs), auto = bf16 on CUDA GPUs that support it and float32 on CPU; "
    "decided once and saved, so --resume continues in it"
)
MUON_PRECISION_CHOICES = ("auto", "float32", "bf16")
MUON_PRECISION_HELP = (
    "precision of Muon's Newton-Schulz orthogonalisation: auto = bf16 on CUDA GPUs, float32 on every CPU "
    "(bf16 is emulated on CPUs without bf16 matrix units, about 25x slower); decided once and saved"
)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``amp`` is "bf16"; nothing when "none" or "bf16-ff" (there the
    feed-forward blocks cast themselves: :func:`labformer.encoder.feed_forward_precision`)."""
    if amp in ("none", "bf16-ff"):
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ValueError(f"amp must be 'none', 'bf16' or 'bf16-ff' once resolved; got {amp!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and the features that decide how fast float32 and bf16 matrix work runs."""

    model: str
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx_bf16: bool
    vendor: str = ""  # /proc/cpuinfo's vendor_id: "GenuineIntel", "AuthenticAMD", or "" where unknown

    @property
    def bf16_units(self) -> bool:
        """Whether the CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX-BF16); elsewhere a
        bf16 matrix product is emulated with float32 instructions and conversions."""
        return self.avx512_bf16 or self.amx_bf16

    @property
    def features(self) -> str:
        """E.g. "AVX2, AVX-512, AVX512-BF16, AMX-BF16" (those present)."""
        names = ("AVX2", "AVX-512", "AVX512-BF16", "AMX-BF16")
        present = (self.avx2, self.avx512, self.avx512_bf16, self.amx_bf16)
        return ", ".join(name for name, has in zip(names, present) if has) or "none of AVX2, AVX-512, AMX"

    def __str__(self) -> str:
        return f"{self.model} ({self.features})"


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """This machine's CPU, read from ``/proc/cpuinfo`` (or the given text of such a file).

    Elsewhere (macOS, Windows) the model is ``platform.processor()`` and the features are unknown (False).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    features = ("avx2" in flags, "avx512f" in flags, "avx512_bf16" in flags, "amx_bf16" in flags)
    return CpuInfo(model, *features, vendor=fields.get("vendor_id", ""))


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision a run trains in: "bf16" (autocast) or "none" (float32), decided from facts only.

    "auto" is bf16 on a CUDA GPU that supports it and float32 on every CPU: whole training steps of
    both presets measured slower in bf16 on every CPU we have (AVX2 only, AVX512-BF16, AMX-BF16;
    ``benchmarks/amp.py``, tables in docs/performance.md), even where a single large bf16 matrix product wins.
    Nothing is timed here, so every run and every torchrun process of one command decides alike. An
    explicit "bf16" that the device cannot run is an error.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {list(AMP_CHOICES)}; got {amp!r}")
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if amp in ("bf16", "bf16-ff") and not supported:
            raise ValueError("--amp bf16 is unavailable: this GPU does not support bfloat16")
        if amp == "auto":
            return "bf16" if supported else "none"
        return amp
    return "none" if amp == "auto" else amp


def resolve_muon_precision(precision: str, device: torch.device) -> str:
    """The dtype Muon orthogonalises in: "bf16" or "float32", decided from facts only (never timed).

    "auto" is bf16 on CUDA (torch.optim.Muon's choice: tensor cores) and float32 on every CPU. Without
    bfloat16 matrix units (AVX2 laptops) bf16 products are emulated: the GPT's Muon step took 25× longer in
    bf16 than in float32 under the AVX2 profile; with them (AMX-BF16) it took the same time, so bf16 gains nothing
    end to end there either (``benchmarks/cpu_profiles.py``). An explicit "bf16" is taken as asked.
    """
    if precision not in MUON_PRECISION_CHOICES:
        raise ValueError(f"muon_precision must be one of {list(MUON_PRECISION_CHOICES)}; got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" else "float32"


def muon_precision_choice(device: torch.device, cpu: CpuInfo | None = None) -> tuple[str, str]:
    """What ``--muon-precision auto`` resolves to on ``device``, and why (in words, from the CPU's facts)."""
    precision = resolve_muon_precision("auto", device)
    if device.type == "cuda":
        return precision, "bf16 on CUDA GPUs, as torch.optim.Muon"
    cpu = cpu or cpu_info()
    if cpu.bf16_units:
        why = "float32 on every CPU: this CPU has bf16 units, but bf16 orthogonalisation is no faster end to end"
    else:
        why = "float32 on every CPU: this CPU has no bf16 matrix units, so bf16 would be emulated (about 25x slower)"
    return precision, why


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
    if (path / runs.CONFIG).exists():
        raise ValueError(
            f"run directory {path} already holds a run; pass --resume {path} to continue it or choose another --out"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create run directory {path}: {error.strerror or error}") from None
    return path


@contextlib.contextmanager
def removed_if_empty_on_failure(run_dir: Path) -> Iterator[None]:
    """If the block fails while ``run_dir`` is still empty (bad data, a bad setting found after the
    directory was made), the directory is removed: a run that never started leaves nothing behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only ever removes an empty directory
        raise


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """Yields a one-element list that holds the elapsed seconds once the block ends."""
    elapsed = [0.0]
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - start
