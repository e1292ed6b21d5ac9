"""Which device a command runs on: "auto" (CUDA if available, else CPU), "cpu" or "cuda"."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_HELP", "check_device_name", "resolve_device"]


DEVICE_HELP = "auto (a CUDA GPU if there is one, else the CPU) | cpu | cuda | cuda:N"


def check_device_name(name: str) -> str:
    """``name`` if it names a device labformer runs on ("auto", "cpu", "cuda", "cuda:N"), else a ValueError
    saying what is accepted, and for Apple's "mps" that it is not supported. Reads no hardware."""
    if name == "mps":
        raise ValueError("--device mps (Apple GPUs) is not supported: labformer runs on the CPU or a CUDA GPU; "
                         "pass --device cpu")  # fmt: skip
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name.removeprefix("cuda:").isdigit()):
        return name
    raise ValueError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")


def resolve_device(name: str) -> torch.device:
    """ "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N" (the N-th GPU); a clear error when
    that GPU is missing, and for Apple's "mps", which labformer does not support."""
    if check_device_name(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    index = name.removeprefix("cuda:")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but no CUDA GPU is available on this machine")
    if name.startswith("cuda:") and int(index) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return torch.device(name)
