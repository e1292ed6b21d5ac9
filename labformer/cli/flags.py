"""Flags every training command shares, and reading which ones the user gave."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from typing import Any

__all__ = ["RUNTIME", "add_config_flags", "picked"]

# The settings a resumed run may take from its new invocation (everything else comes from config.json);
# "--amp auto" and "--muon-precision auto" (the defaults) keep the saved precisions.
RUNTIME = ("device", "amp", "muon_precision", "compile", "checkpoint_every")


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_class: type,
    presets: dict[str, dict[str, Any]],
    *,
    skip: Sequence[str] = (),
) -> list[str]:
    """One ``--field-name`` flag per field of the dataclass ``config_class`` (but ``skip``), typed from its
    annotation (a Literal gives choices), its help from the field's ``setting`` help line followed by its
    default and the presets' values. A flag not given is None, so the preset's value stands.

    A True-by-default switch becomes ``--no-field-name``. Returns the field names (for :func:`picked`).
    """
    hints = typing.get_type_hints(config_class)
    names = []
    for spec in dataclasses.fields(config_class):
        if spec.name in skip:
            continue
        names.append(spec.name)
        kind = hints[spec.name]
        values = [f"{preset} {values[spec.name]}" for preset, values in presets.items() if spec.name in values]
        shown = f"default {spec.default}" + (f"; preset {', '.join(values)}" if values else "")
        help_line = f"{spec.metadata.get('help', '')} ({shown})".lstrip().replace("%", "%%")  # argparse formats it
        flag = "--" + spec.name.replace("_", "-")
        if kind is bool:  # --name and --no-name: a preset may have changed the default either way
            parser.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, help=help_line)
            continue
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, choices=options, help=help_line)
        else:
            parser.add_argument(flag, type=options[0] if options else kind, metavar=spec.name.upper(), help=help_line)
    return names


def picked(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The flags among ``names`` that the user gave (0, 0.0 and False count: only None means not given)."""
    values = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None}
