"""Run directories: weights as safetensors plus JSON, written atomically, read without running code.

A run directory holds ``config.json`` (what model, how trained), ``model.safetensors`` (the best
weights) and ``checkpoint.safetensors`` (model, optimiser and RNG states as tensors; epoch, history
and optimiser settings as JSON in its metadata: one file, so never half-updated) to resume from.
Every file is written to a temporary name and renamed, so a kill at any moment leaves the previous
version intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = ["atomic_write", "read_json", "read_tensors", "write_json", "write_tensors"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(temporary_path)``, then renames it onto ``path`` (same directory, so atomic)."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        write(Path(temporary))
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(f"cannot write {path}: {error.strerror or error}; the previous version is intact") from None
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error})") from None


def write_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    seen: set[int] = set()
    copies = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.data_ptr() in seen:  # tied weights: safetensors stores each storage once
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        copies[name] = tensor
    tensors = copies
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """Loads a safetensors file (pure data: no code can run), with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or head == b"PK":  # pickle protocol 2+ / zip (torch.save)
        raise ValueError(
            f"{what} {path} is a pickle or torch.save file; labformer only loads safetensors "
            "(pickles can run code and are refused)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{what} {path} is truncated or corrupt ({error})") from None


def read_metadata(path: Path, what: str) -> dict[str, str]:
    """The string metadata of a safetensors file (read after :func:`read_tensors` validated it)."""
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{what} {path} is truncated or corrupt ({error})") from None


def flatten_optimizer(state: dict) -> tuple[dict[str, Tensor], dict]:
    """torch optimiser state dict -> (tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


RUNTIME_FIELDS = ("device", "compile", "checkpoint_every")  # may change when a run is resumed


def read_resumable_run(run_dir: Path, kind: str, runtime: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved ``config.json`` of a ``kind`` run, and its training settings with this invocation's
    run-time switches (device, compile, checkpoint_every) taken from ``runtime``.

    The precision is the saved one (resolved when the run started), so a resumed run computes what the
    uninterrupted run would have; ``runtime.amp`` may be "auto" or that same value, anything else is refused.
    """
    saved = read_json(Path(run_dir) / "config.json", "run config")
    if saved.get("kind") != kind:
        raise ValueError(f"{run_dir} holds a {saved.get('kind')} run; `train {kind} --resume` needs a {kind} run")
    settings = {**saved["train"], **{name: getattr(runtime, name) for name in RUNTIME_FIELDS}}
    asked, trained = getattr(runtime, "amp", "auto"), settings.get("amp", "auto")
    if trained == "auto":  # written before the precision was saved resolved: decide it now
        settings["amp"] = asked
    elif asked not in ("auto", trained):
        raise ValueError(
            f"{run_dir} was trained with --amp {trained}; a resumed run continues in that precision "
            f"(drop --amp, or pass --amp {trained}); got --amp {asked}"
        )
    return saved, settings


def save_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    extra: dict[str, Tensor] | None = None,
) -> None:
    """One resumable file: model, optimiser and RNG states (+ ``extra``) as tensors, ``meta`` as JSON."""
    optimizer_tensors, optimizer_rest = flatten_optimizer(optimizer.state_dict())
    tensors = {
        **{f"model.{k}": v for k, v in model.state_dict().items()},
        **optimizer_tensors,
        **rng_tensors(),
        **(extra or {}),
    }
    write_tensors(path, tensors, {"state": json.dumps({**meta, "optimizer": optimizer_rest})})


def load_training_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Restores what :func:`save_training_state` wrote; returns (meta, all tensors)."""
    tensors = read_tensors(path, "training checkpoint")
    try:
        meta = json.loads(read_metadata(path, "training checkpoint")["state"])
        model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
    except (KeyError, json.JSONDecodeError, RuntimeError) as error:
        raise ValueError(f"training checkpoint {path} does not fit this run ({error})") from None
    restore_rng(tensors)
    return meta, tensors


def rng_tensors() -> dict[str, Tensor]:
    """The global RNG states (CPU, and CUDA when present) as tensors."""
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return tensors


def restore_rng(tensors: dict[str, Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
