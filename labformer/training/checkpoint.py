"""Resumable training state: model, optimiser and RNG states in one safetensors file.

``checkpoint.safetensors`` holds the tensors (model, optimiser state, RNG states) and, as JSON in its
metadata, the progress, history and optimiser settings: one file, so never half-updated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from labformer.io import read_metadata, read_tensors, write_tensors
from labformer.runs import read_run_config

__all__ = ["load_training_state", "read_resumable_run", "save_training_state"]


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
# Precisions, saved resolved; the value a run saved before the field existed: autocast was decided on
# resume ("auto"), Muon ran torch.optim.Muon's bfloat16.
PRECISION_FIELDS = {"amp": "auto", "muon_precision": "bf16"}


def read_resumable_run(run_dir: Path, kind: str, runtime: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved ``config.json`` of a ``kind`` run, and its training settings with this invocation's
    run-time switches (device, compile, checkpoint_every) taken from ``runtime``.

    The precisions are the saved ones (resolved when the run started), so a resumed run computes what the
    uninterrupted run would have; ``runtime.amp`` (and ``runtime.muon_precision``) may be "auto" or that
    same value, anything else is refused.
    """
    saved = read_run_config(run_dir)
    if saved["kind"] != kind:
        raise ValueError(f"{run_dir} holds a {saved['kind']} run; `train {kind} --resume` needs a {kind} run")
    settings = {**saved["train"], **{name: getattr(runtime, name) for name in RUNTIME_FIELDS}}
    for name, unsaved in PRECISION_FIELDS.items():
        if not hasattr(runtime, name):
            continue
        asked, trained = getattr(runtime, name), settings.get(name, unsaved)
        flag = "--" + name.replace("_", "-")
        if trained == "auto":  # written before the precision was saved resolved: decide it now
            settings[name] = asked
        elif asked not in ("auto", trained):
            raise ValueError(
                f"{run_dir} was trained with {flag} {trained}; a resumed run continues in that precision "
                f"(drop {flag}, or pass {flag} {trained}); got {flag} {asked}"
            )
        else:
            settings[name] = trained
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
