"""Flags every training command shares, and reading which ones the user gave."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from typing import Any

from labformer.device import DEVICE_HELP as DEVICE_CHOICES

__all__ = ["DEVICE_HELP", "RUNTIME", "SHIPPED_HELP", "add_config_flags", "picked", "run_argument", "shown_default"]

DEVICE_HELP = f"{DEVICE_CHOICES} (default: auto)"
SHIPPED_HELP = "or a shipped model's name ({}; a run folder of that name here comes first)"


def run_argument(value: str) -> str:
    """The type of a RUN_DIR argument: a run folder, or the name of a model shipped with labformer
    (:func:`labformer.runs.run_path` says which wins)."""
    from labformer.runs import run_path

    return str(run_path(value))


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
    annotation (a Literal gives choices), its help from the field's ``setting`` help line followed by what a
    run gets without the flag (:func:`shown_default`). A flag not given is None, so the preset's value stands.

    A True-by-default switch becomes ``--no-field-name``. Returns the field names (for :func:`picked`).
    """
    hints = typing.get_type_hints(config_class)
    names = []
    for spec in dataclasses.fields(config_class):
        if spec.name in skip:
            continue
        names.append(spec.name)
        kind = hints[spec.name]
        help_line = f"{spec.metadata.get('help', '')}{shown_default(spec, presets)}".strip().replace("%", "%%")
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


def shown_default(spec: dataclasses.Field, presets: dict[str, dict[str, Any]]) -> str:
    """What a run gets when the flag is not given, as " (…)" after the help line: the value itself when every
    preset gives the same one, else each preset's, the default preset (the first) first — "(fast: 3 · best:
    4 · lab: 6)". Nothing when the value is None and the help line already says what the default is."""
    values = {name: preset.get(spec.name, spec.default) for name, preset in presets.items()} or {"": spec.default}
    distinct = {repr(value) for value in values.values()}
    if len(distinct) == 1:
        value = next(iter(values.values()))
        if value is None and "default" in spec.metadata.get("help", ""):
            return ""
        return f" (default: {value})"
    return " (" + " · ".join(f"{name}: {value}" for name, value in values.items()) + ")"


def picked(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The flags among ``names`` that the user gave (0, 0.0 and False count: only None means not given)."""
    values = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None}
