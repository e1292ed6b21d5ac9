"""A run directory: the names of its files, the kind → (model, config) registry, and loading.

A run directory holds ``config.json`` (what model, how trained), ``model.safetensors`` (the best
weights), ``checkpoint.safetensors`` (to resume from), ``history.json``/``history.csv``,
``metrics.json`` and figures; a GPT run also ``vocab.json`` and ``sample.txt``; a seq2seq run ``vocab.json``,
``mistakes.md`` and ``cross_attention.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from labformer.config import JsonConfig
from labformer.device import resolve_device
from labformer.io import read_json, read_tensors
from labformer.models.gpt import GPT, GPTConfig
from labformer.models.seq2seq import Seq2Seq, Seq2SeqConfig
from labformer.models.vit import ViT, ViTConfig

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "HISTORY",
    "KINDS",
    "METRICS",
    "MODEL",
    "PRETRAINED",
    "SAMPLE",
    "SHIPPED",
    "VOCAB",
    "build_model",
    "load",
    "load_run",
    "read_run_config",
    "run_name",
    "run_path",
    "shipped_name",
]

CONFIG = "config.json"  # {"kind", "preset", "model": model config, "train": training config, ...}
MODEL = "model.safetensors"  # the best weights
CHECKPOINT = "checkpoint.safetensors"  # model, optimiser, RNG states and progress, for --resume
HISTORY = "history.json"  # one row per epoch or evaluation (also as history.csv)
METRICS = "metrics.json"  # the final numbers and how the run ran
VOCAB = "vocab.json"  # a GPT run's characters; a seq2seq run's {"source": [...], "target": [...]}
SAMPLE = "sample.txt"  # a GPT run's generated sample
PRETRAINED = Path(__file__).parent / "serve" / "pretrained"  # the small runs shipped with the package
SHIPPED = {"vit": "digits", "gpt": "text", "seq2seq": "dates"}  # kind -> the folder of its shipped run

# Every kind of model a run can hold: its class and its config's class.
KINDS: dict[str, tuple[type[nn.Module], type[JsonConfig]]] = {
    "vit": (ViT, ViTConfig),
    "gpt": (GPT, GPTConfig),
    "seq2seq": (Seq2Seq, Seq2SeqConfig),
}


def run_path(run_dir: str | Path) -> Path:
    """Where the run ``run_dir`` names lies: a run folder (one holding ``config.json``) of that path first,
    else the shipped model of that name ("digits", "text" or "dates"), else the path as given.

    So ``labformer predict digits picture.png`` uses the shipped digits ViT, unless ``./digits`` is a run
    folder of your own; a folder named ``digits`` that holds no run (pictures, say) does not hide it.
    """
    path = Path(run_dir)
    if (path / CONFIG).is_file() or str(run_dir) not in SHIPPED.values():
        return path
    return PRETRAINED / str(run_dir)


def build_model(kind: str, model_config: dict[str, Any]) -> nn.Module:
    """A new model of ``kind`` ("vit", "gpt" or "seq2seq") from the "model" part of a run's config."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} in {CONFIG}; expected one of {sorted(KINDS)}")
    model_class, config_class = KINDS[kind]
    return model_class(config_class.from_dict(model_config))


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of ``run_dir`` (a folder or a shipped model's name, see :func:`run_path`) as a dict,
    checked to be a labformer run (it has a kind and a model)."""
    run_dir = run_path(run_dir)
    if not run_dir.is_dir():
        names = ", ".join(SHIPPED.values())
        raise FileNotFoundError(f"run directory {run_dir} does not exist (the shipped models are named {names})")
    run = read_json(run_dir / CONFIG, "run config")
    if not isinstance(run, dict) or "kind" not in run or "model" not in run:
        raise ValueError(f"{run_dir / CONFIG} is not a labformer run config (no 'kind' and 'model')")
    return run


def load_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The best model of ``run_dir`` (a run folder or a shipped model's name: "digits", "text", "dates") in eval
    mode, and the run's ``config.json`` as a dict.

    Raises FileNotFoundError for a missing run or file, ValueError for a corrupt, foreign or
    mismatched checkpoint. Only safetensors and JSON are read: loading never runs code.
    """
    run_dir = run_path(run_dir)
    run = read_run_config(run_dir)
    model = build_model(run["kind"], run["model"])
    weights = read_tensors(run_dir / MODEL, "model weights")
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
        raise ValueError(f"{run_dir / MODEL} does not fit the {run['kind']} model of {run_dir / CONFIG}: {details}")
    model.load_state_dict(weights)
    model.run_info = run  # type: ignore[assignment]
    return model.to(resolve_device(device)).eval(), run


def load(run_dir: str | Path, *, device: str = "cpu") -> nn.Module:
    """The trained model of ``run_dir`` (ViT, GPT or encoder–decoder) in eval mode; ``model.config`` is its
    config. ``run_dir`` is a run folder, or the name of a model shipped with labformer: "digits" (a ViT on
    MNIST), "text" (a character GPT on Tiny Shakespeare) or "dates" (an encoder–decoder); a run folder of that
    name in the working directory comes first (see :func:`run_path`).

    Example:
        >>> model = labformer.load("digits")  # the shipped ViT: no training needed
        >>> model(torch.zeros(1, 1, 28, 28)).shape
        torch.Size([1, 10])
        >>> model = labformer.load("runs/20261126-vit-mnist")  # doctest: +SKIP
    """
    return load_run(run_dir, device=device)[0]


def run_name(run_dir: str | Path) -> str:
    """How a page or a report names a run: "shipped digits model", "shipped text model", "shipped dates
    model" for the runs in the package, else the run folder's name — never a path of the disk."""
    shipped = shipped_name(run_dir)
    return f"shipped {shipped} model" if shipped else run_path(run_dir).resolve().name


def shipped_name(run_dir: str | Path) -> str | None:
    """Which of the models shipped in the package ``run_dir`` is ("digits", "text", "dates"), else None."""
    here = run_path(run_dir).resolve()
    return next((name for name in SHIPPED.values() if here == (PRETRAINED / name).resolve()), None)
