"""Flags every training command shares, and reading which ones the user gave."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["add_runtime_flags", "picked", "resume_settings"]


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """--device, --amp and --compile: where and how a run computes (the same for every model)."""
    from labformer.training.runtime import AMP_CHOICES, AMP_HELP

    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--amp", default="auto", choices=AMP_CHOICES, help=AMP_HELP)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")


def picked(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The flags among ``names`` that the user gave (0 and 0.0 count: only None and unset switches don't)."""
    values = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None and value is not False}


def resume_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed run may take from this invocation: device, amp ("auto" keeps the saved precision),
    compile and checkpoint_every; everything else comes from the run's config.json."""
    return {
        "device": args.device,
        "amp": args.amp,
        "compile": args.compile,
        "checkpoint_every": args.checkpoint_every or 0,
    }
