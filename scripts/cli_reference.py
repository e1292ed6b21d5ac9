"""Writes docs/reference/cli.md from the command's own argparse parsers, so the reference never drifts
from ``--help`` (a test regenerates it and compares).

    python scripts/cli_reference.py          # rewrite the page
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli.md"
WIDTH = "100"  # argparse wraps at $COLUMNS: fixed, so the page is the same on every machine

INTRO = """# Command-line reference

Generated from the parsers by `python scripts/cli_reference.py` (a test checks that this page is up to
date): what `labformer COMMAND --help` prints. Every `train` setting can also be given in Python as a
field of `ViTConfig`, `ClassifyConfig`, `GPTConfig` or `LanguageConfig`.
"""


def commands(parser: argparse.ArgumentParser, prefix: str = "labformer") -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of the command and every subcommand below it, depth first, in the parsers' order."""
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, f"{prefix} {name}")
    return found


def render() -> str:
    """The page's Markdown."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from labformer.cli import build_parser

        parts = [INTRO]
        for name, parser in commands(build_parser()):
            parts.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render())
    print(f"wrote {PAGE.relative_to(PAGE.parents[2])}")
