"""The four pages of ``labformer serve`` in a language: one layout (``templates/layout.html``: the head, the
menu, the scripts) around one body per page (``templates/<page>.html``), filled from the language's
catalogue (:mod:`labformer.serve.i18n`) on the server.

In a template an element names its words by key: ``data-i18n="key"`` fills its text, and
``data-i18n-title``, ``data-i18n-aria-label``, ``data-i18n-placeholder`` and ``data-i18n-alt`` fill those
attributes (HTML-escaped). The menu's link to the page itself and the link to its language get
``aria-current``. The catalogue goes into the page as ``<script id="messages" type="application/json">``
for the scripts (``LF.t`` in ``common.js``).
"""

from __future__ import annotations

import html
import json
from functools import cache
from html.parser import HTMLParser
from importlib import resources
from string import Template

from labformer.serve.i18n import LANGUAGES, catalogue, inline_html

__all__ = ["PAGES", "render_page"]

PAGES = ("digits", "text", "seq2seq", "lab")
ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")  # filled from data-i18n-<name>
MESSAGES = '<script id="messages" type="application/json"></script>'


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", f"{name}.html").read_text(encoding="utf-8")


class _Filler(HTMLParser):
    """Copies a template, filling what its ``data-i18n*`` attributes name from ``texts``: a missing key is a
    KeyError, so a page never shows a key or an empty label."""

    def __init__(self, texts: dict[str, str], page: str, language: str) -> None:
        super().__init__(convert_charrefs=True)
        self.texts, self.current = texts, {"data-page": (page, "page"), "data-lang": (language, "true")}
        self.out: list[str] = []
        self.raw = False  # inside <script> or <style>: text copied as it is

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(self._tag(tag, attrs))
        self.raw = tag in ("script", "style")
        key = dict(attrs).get("data-i18n")
        if key is not None:
            self.out.append(inline_html(self.texts[key]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(self._tag(tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.raw = False
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(data if self.raw else html.escape(data, quote=False))

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> str:
        """The start tag as written, or rebuilt with its attributes filled in and ``aria-current`` added."""
        named = dict(attrs)
        added = {name: self.texts[named[f"data-i18n-{name}"]] for name in ATTRIBUTES if f"data-i18n-{name}" in named}
        for attribute, (value, current) in self.current.items():
            if named.get(attribute) == value:
                added["aria-current"] = current
        if not added:
            return self.get_starttag_text() or f"<{tag}>"
        pairs = [(name, value) for name, value in attrs if name not in added] + list(added.items())
        written = "".join(f" {name}" if value is None else f' {name}="{html.escape(value)}"' for name, value in pairs)
        return f"<{tag}{written}>"


@cache
def render_page(page: str, language: str) -> str:
    """The HTML of ``page`` (one of :data:`PAGES`) in ``language`` (one of LANGUAGES), with its catalogue."""
    if page not in PAGES or language not in LANGUAGES:
        raise ValueError(f"no page {page!r} in {language!r}: pages are {', '.join(PAGES)}")
    texts = catalogue(language)
    source = Template(_template("layout")).substitute(lang=language, page=page, body=_template(page))
    filler = _Filler(texts, page, language)
    filler.feed(source)
    filler.close()
    # JSON inside <script>: no "<" may end the element early ("\u003c" reads back as "<").
    messages = json.dumps(texts, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")
    return "".join(filler.out).replace(MESSAGES, MESSAGES.replace("></", f">{messages}</"), 1)
