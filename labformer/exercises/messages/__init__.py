"""The checker's and the exercises' words, one catalogue per language (``en.json``, ``fr.json``), keyed by
name: code holds keys, the catalogues hold sentences."""

from __future__ import annotations

import json
import locale
import os
from functools import cache
from importlib import resources

LANGUAGES = ("fr", "en")


def default_language() -> str:
    """French where the user's locale is French (LC_ALL, LC_MESSAGES, LANG, then the system's), else English."""
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable)
        if value:
            return "fr" if value.lower().startswith("fr") else "en"
    try:
        system = locale.getlocale()[0] or ""
    except ValueError:
        system = ""
    return "fr" if system.lower().startswith("fr") else "en"


@cache
def catalogue(language: str) -> dict[str, str]:
    """The language's catalogue: {key: text with {named} fields}."""
    if language not in LANGUAGES:
        raise ValueError(f"--lang must be one of {', '.join(LANGUAGES)}; got {language!r}")
    text = resources.files(__package__).joinpath(f"{language}.json").read_text(encoding="utf-8")
    return json.loads(text)


class Messages:
    """The texts of one language."""

    def __init__(self, language: str | None = None) -> None:
        self.language = language or default_language()
        self.texts = catalogue(self.language)

    def text(self, key: str, **fields: object) -> str:
        """The text of ``key`` with ``fields`` filled in."""
        return self.texts[key].format(**fields)

    def mistake(self, mistake_id: str) -> str:
        return self.text(f"mistake.{mistake_id}")

    def number(self, value: float, decimals: int = 1) -> str:
        """A number by the language's rules: 98.7 in English, 98,7 in French."""
        text = f"{value:,.{decimals}f}"
        if self.language == "fr":
            text = text.replace(",", "\u202f").replace(".", ",")
        return text

    def percent(self, share: float) -> str:
        """A share (0–1) as a percentage: "98.7 %" or "98,7 %"."""
        return f"{self.number(100 * share)}\u00a0%"
