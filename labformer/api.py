"""Loading trained runs: ``labformer.load(RUN_DIR)`` for every model kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from labformer.training import checkpoint as ckpt
from labformer.training.runtime import resolve_device

__all__ = ["load", "load_run"]


def _build(kind: str, model_config: dict) -> nn.Module:
    if kind == "vit":
        from labformer.models.vit import ViT, ViTConfig

        return ViT(ViTConfig.from_dict(model_config))
    if kind == "gpt":
        from labformer.models.gpt import GPT, GPTConfig

        return GPT(GPTConfig.from_dict(model_config))
    raise ValueError(f"unknown model kind {kind!r} in config.json; expected 'vit' or 'gpt'")


def load_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The best model of ``run_dir`` in eval mode, and the run's ``config.json`` as a dict.

    Raises FileNotFoundError for a missing run or file, ValueError for a corrupt, foreign or
    mismatched checkpoint. Only safetensors and JSON are read: loading never runs code.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    run = ckpt.read_json(run_dir / "config.json", "run config")
    if not isinstance(run, dict) or "kind" not in run or "model" not in run:
        raise ValueError(f"{run_dir / 'config.json'} is not a labformer run config (no 'kind' and 'model')")
    model = _build(run["kind"], run["model"])
    weights = ckpt.read_tensors(run_dir / "model.safetensors", "model weights")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{k} {tuple(weights[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
            f"wrong shapes {wrong[:3]}" if wrong else ""]))  # fmt: skip
        raise ValueError(
            f"{run_dir / 'model.safetensors'} does not fit the {run['kind']} model of "
            f"{run_dir / 'config.json'}: {details}"
        )
    model.load_state_dict(weights)
    model.run_info = run  # type: ignore[assignment]
    return model.to(resolve_device(device)).eval(), run


def load(run_dir: str | Path, *, device: str = "cpu") -> nn.Module:
    """The trained model of ``run_dir`` (ViT or GPT) in eval mode; ``model.config`` is its config.

    Example:
        >>> model = labformer.load("runs/20261126-vit-mnist")  # doctest: +SKIP
        >>> model(images).argmax(-1)  # doctest: +SKIP
    """
    return load_run(run_dir, device=device)[0]
