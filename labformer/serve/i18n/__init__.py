"""The web page's words, one catalogue per language (``en.json``, ``fr.json``: flat ``{"key": "text"}``, the
same keys, ``{name}`` fields), and which language a request gets.

Code and templates hold keys, the catalogues hold sentences. In a page's HTML a text may use two marks,
rendered by :func:`inline_html`: ``**strong**`` and ```code```; the scripts show texts as they are.
The API's answers and the command line stay in English.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources

__all__ = ["DEFAULT", "LANGUAGES", "catalogue", "choose_language", "inline_html", "plain"]

LANGUAGES = ("en", "fr")
DEFAULT = "en"  # when neither the address nor the browser names a language we have
_MARKS = ((re.compile(r"\*\*(.+?)\*\*"), "strong"), (re.compile(r"`(.+?)`"), "code"))


@cache
def catalogue(language: str) -> dict[str, str]:
    """The catalogue of ``language`` ("en" or "fr"): {key: text with {named} fields}."""
    if language not in LANGUAGES:
        raise ValueError(f"the page's language must be one of {', '.join(LANGUAGES)}; got {language!r}")
    return json.loads(resources.files(__package__).joinpath(f"{language}.json").read_text(encoding="utf-8"))


def choose_language(asked: str | None, accept_language: str | None) -> str:
    """The language of a page: ``asked`` (the address's ``?lang=``) when it is one of :data:`LANGUAGES`, else
    the one the browser's ``Accept-Language`` header prefers (highest q-value, the first listed on a tie;
    ``fr-CA`` counts as ``fr``), else :data:`DEFAULT`.

    >>> choose_language(None, "fr-CA,fr;q=0.9,en;q=0.8"), choose_language("de", "en-US")
    ('fr', 'en')
    """
    if asked in LANGUAGES:
        return asked
    best, best_q = DEFAULT, 0.0
    for part in (accept_language or "").split(","):
        tag, *parameters = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0  # a garbled weight: the header is ignored where it cannot be read
        language = tag.lower().split("-")[0]
        if language in LANGUAGES and q > best_q:
            best, best_q = language, q
    return best


def plain(text: str) -> str:
    """A catalogue text without its marks: what a reader sees of it."""
    for pattern, _ in _MARKS:
        text = pattern.sub(r"\1", text)
    return text


def inline_html(text: str) -> str:
    """A catalogue text as HTML: escaped, its ``**strong**`` and ```code``` marks as elements."""
    text = html.escape(text, quote=False)
    for pattern, tag in _MARKS:
        text = pattern.sub(rf"<{tag}>\1</{tag}>", text)
    return text
