"""The pages of ``labformer serve`` in English and French: one catalogue per language with the same keys and
fields; every word a page shows comes from it (the HTML, filled on the server, and the scripts, which hold
keys, not sentences); one layout holds the head and the menu; the language is the address's ``?lang=``, else
the browser's ``Accept-Language``, else English. The pages in a real browser: tests/test_browser.py."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from labformer.serve.app import create_app
from labformer.serve.i18n import LANGUAGES, catalogue, choose_language, inline_html, plain
from labformer.serve.pages import PAGES

SERVE = Path(__file__).resolve().parents[1] / "labformer" / "serve"
SCRIPTS = sorted((SERVE / "static").glob("*.js"))
FIELD = re.compile(r"\{(\w+)\}")
SHOWN_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")


@pytest.fixture(scope="module")
def client() -> TestClient:
    """The pages need no model: an app serving none answers them at once."""
    return TestClient(create_app(None, None), base_url="http://localhost")


# ---------------------------------------------------------------- the catalogues


def test_the_catalogues_have_the_same_sorted_keys_no_empty_text_and_the_same_fields():
    english, french = catalogue("en"), catalogue("fr")
    assert len(english) > 150 and list(english) == sorted(english) and list(french) == sorted(french)
    assert set(english) == set(french), set(english) ^ set(french)
    for key, text in english.items():
        assert text.strip() and french[key].strip(), key
        assert sorted(FIELD.findall(text)) == sorted(FIELD.findall(french[key])), key
        # commands, options and file names are not translated
        assert sorted(re.findall(r"`[^`]+`", text)) == sorted(re.findall(r"`[^`]+`", french[key])), key
    assert french["nav.digits"] == "Chiffres" and french["digits.ready"].startswith("Dessinez un chiffre")


def test_a_catalogue_text_is_escaped_in_the_html_and_its_marks_become_elements():
    assert inline_html("a <b> & **c** `d`") == "a &lt;b&gt; &amp; <strong>c</strong> <code>d</code>"
    assert plain("a **c** `d`") == "a c d"


# ---------------------------------------------------------------- the pages as served


class Page(HTMLParser):
    """What a reader gets of a page: its text nodes with the innermost ``data-i18n`` key around each (or
    None), the shown attributes, each ``data-i18n`` element's whole text, and the links."""

    SKIPPED = {"script", "style", "textarea"}  # code, the catalogue's JSON, the prompt the model continues
    VOID = {"meta", "link", "input", "img", "br", "hr", "source", "col", "area", "base", "embed", "track", "wbr"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[tuple[str | None, str]] = []  # (key around it or None, text)
        self.filled: dict[int, tuple[str, list[str]]] = {}  # id of a data-i18n element -> (key, its text)
        self.attributes: list[tuple[str, str, str | None]] = []  # (name, value, data-i18n-name key)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.elements.append((tag, named))
        for name in SHOWN_ATTRIBUTES:
            if named.get(name) is not None:
                self.attributes.append((name, named[name], named.get(f"data-i18n-{name}")))
        if tag not in self.VOID:
            self.stack.append((tag, named))
            if "data-i18n" in named:
                self.filled[id(named)] = (named["data-i18n"], [])

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "script":
            name = self.stack[-1][1].get("id") or ""
            self.scripts[name] = self.scripts.get(name, "") + data
        if any(tag in self.SKIPPED or "brand" in (named.get("class") or "") for tag, named in self.stack):
            return  # the brand, "labformer", is a name in every language
        keys = [named for _, named in self.stack if "data-i18n" in named]
        for named in keys:
            self.filled[id(named)][1].append(data)
        if data.strip():
            self.texts.append((keys[-1]["data-i18n"] if keys else None, data.strip()))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("page", PAGES)
def test_every_word_of_a_page_comes_from_its_languages_catalogue(client, page, language):
    answer = client.get(f"/{page}?lang={language}")
    assert answer.status_code == 200 and answer.headers["content-language"] == language
    texts = catalogue(language)
    shown = {plain(text) for text in texts.values()}
    html = Page(answer.text)
    assert html.elements[0] == ("html", {"lang": language})
    for key, pieces in html.filled.values():  # each element that names a key holds that text, and only it
        assert "".join(pieces).strip() == plain(texts[key]), key
    for key, text in html.texts:  # text outside those elements: no words, only "–", "0", "1", "×"…
        assert key is not None or not re.search(r"[^\W\d_]", text), f"{page}: {text!r} is not in the catalogue"
    for name, value, key in html.attributes:
        assert value in shown, f"{page}: {name}={value!r} is not in the catalogue"
        assert key is None or value == texts[key], (name, key)
    title = [text for key, text in html.texts if key == f"{page}.title"]
    assert title == [texts[f"{page}.title"]]
    assert json.loads(html.scripts["messages"]) == texts  # the scripts' catalogue, whole
    assert "</" not in html.scripts["messages"]
    current = [named["href"] for tag, named in html.elements if tag == "a" and named.get("aria-current") == "page"]
    assert current == [f"/{page}?lang={language}"]  # the menu marks this page, and keeps the language
    menu = [named["href"] for tag, named in html.elements if tag == "a" and "data-page" in named]
    assert menu == [f"/{name}?lang={language}" for name in PAGES]
    switch = {named["hreflang"]: named for tag, named in html.elements if tag == "a" and "hreflang" in named}
    assert {name: link["href"] for name, link in switch.items()} == {name: f"/{page}?lang={name}" for name in LANGUAGES}
    assert switch[language].get("aria-current") == "true"


def test_the_head_and_the_menu_are_written_once():
    """One layout holds the <head> and the top bar; each page's template is its <main> only (the views that
    `labformer attention` writes as standalone HTML files are not pages of the server)."""
    files = [*(SERVE / "templates").iterdir(), *(SERVE / "static").iterdir(), SERVE / "app.py", SERVE / "pages.py"]
    for marker in ("<head>", 'class="topbar"', "<nav", 'rel="stylesheet"'):
        holders = [path.relative_to(SERVE).as_posix() for path in files if marker in path.read_text()]
        assert holders == ["templates/layout.html"], (marker, holders)
    for page in PAGES:
        body = (SERVE / "templates" / f"{page}.html").read_text()
        assert body.lstrip().startswith("<main") and body.rstrip().endswith("</main>")


# ---------------------------------------------------------------- which language


@pytest.mark.parametrize(
    ("query", "header", "language"),
    [
        ("", "fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        ("", "en-US", "en"),
        ("", "en-US,en;q=0.9,fr;q=0.8", "en"),
        ("?lang=fr", "en", "fr"),
        ("?lang=en", "fr-CA", "en"),
        ("?lang=de", "fr-CA,fr;q=0.9", "fr"),  # a language the page does not have: the browser's choice
        ("?lang=de", None, "en"),
        ("", "de-DE,de;q=0.9,fr;q=0.5,en;q=0.4", "fr"),  # the best the page has
        ("", "en;q=0.3, fr-BE;q=0.7", "fr"),
        ("", "fr;q=0, en;q=0.1", "en"),  # q=0: not acceptable
        ("", "fr-CA;level=1;q=0.5", "fr"),
        ("", None, "en"),
    ],
)
def test_the_language_is_the_addresss_else_the_browsers_else_english(client, query, header, language):
    headers = {"Accept-Language": header} if header is not None else {}
    answer = client.get(f"/digits{query}", headers=headers)
    assert answer.status_code == 200 and f'<html lang="{language}">' in answer.text
    assert answer.headers["vary"] == "Accept-Language"


@pytest.mark.parametrize("header", ["", "*", "fr;q=abc", ";;,,", "x" * 300, "fr;q=nan", "=;q=", "\u00e9t\u00e9"])
def test_an_odd_accept_language_header_gives_english(header):
    assert choose_language(None, header) == "en"


def test_the_home_page_keeps_the_language_asked(client):
    assert client.get("/", follow_redirects=False).headers["location"] == "/digits"
    assert client.get("/?lang=fr", follow_redirects=False).headers["location"] == "/digits?lang=fr"
    assert client.get("/?lang=xx", follow_redirects=False).headers["location"] == "/digits"


# ---------------------------------------------------------------- the scripts


def literals(source: str) -> list[str]:
    """The string and template literals of a script (comments and regular expressions skipped); in a
    template each ``${…}`` reads ``{}``, and the literals inside it are listed on their own."""
    found: list[str] = []
    templates: list[list] = []  # open templates: [pieces so far, brace depth in the current ${…}]
    last, i = "", 0  # last: the code's last character, which tells a regular expression from a division
    while i < len(source):
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = len(source) if end < 0 else end
        elif source.startswith("/*", i):
            i = source.index("*/", i) + 2
        elif c in "\"'":
            j = i + 1
            while source[j] != c:
                j += 2 if source[j] == "\\" else 1
            found.append(source[i + 1 : j])
            i, last = j + 1, c
        elif c == "`" or (c == "}" and templates and templates[-1][1] == 0):
            if c == "`":
                templates.append([[], 0])
            text, j = "", i + 1
            while not source.startswith(("`", "${"), j):
                text += source[j : j + 2] if source[j] == "\\" else source[j]
                j += 2 if source[j] == "\\" else 1
            templates[-1][0].append(text)
            if source[j] == "`":
                found.append("{}".join(templates.pop()[0]))
                i = j + 1
            else:
                i = j + 2
            last = "`"
        elif c == "/" and (last == "" or last in "(,=:[!&|?{};+-*%<>~^"):
            j, in_class = i + 1, False
            while in_class or source[j] != "/":
                in_class = (in_class or source[j] == "[") and source[j] != "]"
                j += 2 if source[j] == "\\" else 1
            i, last = j + 1, "/"
        else:
            if templates and c in "{}":
                templates[-1][1] += 1 if c == "{" else -1
            last = last if c.isspace() else c
            i += 1
    return found


WORD = re.compile(r"[(“«\"']?[^\W\d_]{2,}(['’][^\W\d_]+)?[)”»\"',.;:!?…]*")
PLACEHOLDER = re.compile(r"\(?\{\}[),.;:!?…]*")
CAPITALISED = re.compile(r"\s*[A-Z][a-z]+[\s,.;:!?…]")  # "Done.", "Could not…"; not "Enter", "Content-Type"
# Strings of the scripts that look like prose but no reader sees, each with why.
NOT_SHOWN = {
    "use strict",  # the scripts' strict-mode directive
}


def prose(text: str) -> bool:
    """Whether a literal reads as words: two words in a row (a ``{}`` counts as one beside a real word), or a
    capitalised word followed by more text."""
    tokens = text.split()
    for a, b in zip(tokens, tokens[1:]):
        words = [bool(WORD.fullmatch(token)) for token in (a, b)]
        if all(w or PLACEHOLDER.fullmatch(t) for w, t in zip(words, (a, b))) and any(words):
            return True
    return bool(CAPITALISED.match(text))


def test_the_prose_finder_finds_sentences_and_lets_code_through():
    found = literals(
        'LF.setStatus("Draw a digit.", "info"); const s = `layer ${l + 1}`; // "a comment"\n'
        'x.replace(/"\'[^/]*/g, ""); const y = a / b / c; el.title = `${n} ${m ? `head ${h}` : "Done."}`;'
    )
    assert found == ["Draw a digit.", "info", "layer {}", "", "head {}", "Done.", "{} {}"]
    assert [text for text in found if prose(text)] == ["Draw a digit.", "layer {}", "head {}", "Done."]
    code = ["canvas.head.active", "13px system-ui, sans-serif", "auto repeat({}, {}px)", "rgba({}, {}, {}, {})",
            "Enter", "Content-Type", '.cell[data-layer="{}"] canvas', "text-char{}-layer{}-{}.png",
            "{} — {}"]  # fmt: skip
    assert not [text for text in code if prose(text)]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_no_sentence_is_left_in_the_scripts(script):
    """The scripts hold keys (``LF.t("digits.ready")``), not sentences: no string that reads as words."""
    left = [text for text in literals(script.read_text()) if prose(text) and text not in NOT_SHOWN]
    assert left == [], f"{script.name} shows words outside the catalogue: {left}"


def test_every_key_the_pages_and_scripts_name_is_in_the_catalogue_and_every_key_is_used():
    texts = catalogue("en")
    named = {f"{page}.title" for page in PAGES}
    for template in (SERVE / "templates").glob("*.html"):
        named |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"$]+)"', template.read_text()))
    prefixes = {key.split(".")[0] for key in texts}
    for script in SCRIPTS:
        named |= {text for text in literals(script.read_text()) if re.fullmatch(r"[a-z0-9]+(\.[a-z0-9_]+)+", text)
                  and text.split(".")[0] in prefixes}  # fmt: skip
    plurals = {key.rsplit(".", 1)[0] for key in texts if key.endswith(".other")}  # LF.plural("text.characters", n)
    assert not [key for key in named if key not in texts and key not in plurals]
    unused = [key for key in texts if key not in named and key.rsplit(".", 1)[0] not in plurals]
    assert unused == [], unused
    assert not [key for key in NOT_SHOWN if not any(key in literals(s.read_text()) for s in SCRIPTS)]
