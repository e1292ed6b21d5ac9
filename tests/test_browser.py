"""The pages of ``labformer serve`` in a real browser: headless Chromium driven by Playwright.

Draws digits with mouse strokes and checks the prediction, the attention grid and the zoom; drops an
image file; generates text and clicks a character to see its attention; opens the lab page. Screenshots
go to each test's temporary directory; the docs' pictures are made by ``scripts/screenshots.py``.

Chromium comes from the system (``apt-get install chromium``; ``.ci/run`` installs it): without it the
tests are skipped on a workstation but fail in CI (``CI`` set), so CI always runs them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import needed_module, script
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"Chromium is missing at {CHROMIUM}: .ci/run installs it with apt-get")
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

playwright = needed_module("playwright.sync_api")
stroke = script("screenshots").stroke  # the mouse strokes that draw on the pad
generate = script("screenshots").generate  # the text page's form, filled and sent


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def browsing(browser, live_server, **options):  # noqa: ANN001, ANN201 - yields a Playwright page
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 1000}, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors  # no JavaScript error on any page


@pytest.fixture
def page(browser, live_server):
    yield from browsing(browser, live_server)


@pytest.fixture
def french_page(browser, live_server):
    """A browser of Québec: French first, as its language settings send it (no ``?lang=`` in the address); the
    test may read what the page copies."""
    languages = {"Accept-Language": "fr-CA,fr;q=0.9,en;q=0.8"}
    permissions = ["clipboard-read", "clipboard-write"]
    yield from browsing(browser, live_server, locale="fr-CA", extra_http_headers=languages, permissions=permissions)


def screenshot(page, tmp_path: Path, name: str) -> None:
    """A full-page picture in the test's folder, to look at when a test fails (the docs' pictures are made
    by ``scripts/screenshots.py``)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def test_drawing_a_digit_shows_the_prediction_and_every_head(page, tmp_path):
    page.goto("/digits")
    expect = playwright.expect
    # the model named in words, with what its float16 weights reach (test_serve recomputes the number)
    expect(page.locator("#model-info")).to_have_text(
        "Model: shipped digits model — 98.70 % test accuracy on MNIST", timeout=15000
    )
    stroke(page, [(140, 40), (141, 140), (142, 240)])  # a one
    expect(page.locator("#prediction")).to_have_text("1", timeout=15000)
    expect(page.locator("#bars .bar")).to_have_count(10)
    expect(page.locator("#heads canvas.head")).to_have_count(3 * 4)  # layers × heads of the pretrained ViT
    assert page.locator("#rollout").is_visible()
    lit = page.evaluate(
        """() => { const pixels = document.getElementById('input28').getContext('2d').getImageData(0, 0, 28, 28);
                  return pixels.data.filter((v, i) => i % 4 == 0 && v > 128).length; }"""
    )
    assert lit > 10  # the 28×28 input shows the stroke
    page.locator("#heads canvas.head").nth(5).hover()
    expect(page.locator("#zoom")).to_be_visible()
    screenshot(page, tmp_path, "digits")
    page.click("#undo")  # the pad is empty again
    expect(page.locator("#prediction")).to_have_class(re.compile(r"\bempty\b"), timeout=15000)
    stroke(page, [(70, 50), (210, 50), (120, 240)])  # a seven in one stroke
    expect(page.locator("#prediction")).to_have_text("7", timeout=15000)
    page.click("#clear")
    expect(page.locator("#prediction")).to_have_class(re.compile(r"\bempty\b"), timeout=15000)


def test_choosing_an_image_file_predicts_it(page, tmp_path):
    from labformer.data import load_mnist

    test = load_mnist().test
    path = tmp_path / "digit.png"
    Image.fromarray(255 - test.images[0, 0].numpy()).save(path)  # dark ink on white, as on paper
    page.goto("/digits")
    page.set_input_files("#file", str(path))
    playwright.expect(page.locator("#prediction")).to_have_text(str(int(test.labels[0])), timeout=15000)
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)  # white paper, nothing on it
    page.set_input_files("#file", str(blank))
    playwright.expect(page.locator("#status")).to_have_text(re.compile("No digit found"), timeout=15000)
    playwright.expect(page.locator("#prediction")).to_have_class(re.compile(r"\bempty\b"))


def test_a_photo_models_colour_input_is_shown_in_colour(page, tmp_path):
    """A photo model answers its input as [red, green, blue] per pixel (here the shipped model's answer is
    given such an input): the page shows those colours, not black."""
    from labformer.serve.models import PRETRAINED, DigitModel

    path = tmp_path / "picture.png"
    Image.new("RGB", (32, 32), (120, 60, 30)).save(path)
    answer = DigitModel(PRETRAINED / "digits").predict(path.read_bytes())
    size = len(answer["input"])
    answer["input"] = [[[200, 30, 90] if (x + y) % 2 else [10, 220, 140] for x in range(size)] for y in range(size)]
    answer.update(prediction="5", empty=False)
    page.route("**/api/digits/predict", lambda route: route.fulfill(json=answer))
    page.goto("/digits")
    page.set_input_files("#file", str(path))
    playwright.expect(page.locator("#prediction")).to_have_text("5", timeout=15000)
    pixels = page.evaluate(
        """() => { const c = document.getElementById('input28');
                  return Array.from(c.getContext('2d').getImageData(0, 0, 2, 1).data); }"""
    )
    assert pixels == [10, 220, 140, 255, 200, 30, 90, 255]


def test_text_streams_in_and_a_character_shows_its_attention(page, live_server, tmp_path):
    expect = playwright.expect
    page.goto("/text")
    generate(page, "ROMEO:", tokens=60, seed=3, temperature=0.8)
    expect(page.locator("#output .char")).to_have_count(len("ROMEO:") + 60, timeout=30000)
    shown = "".join(page.locator("#output .char").all_text_contents())
    request = {"prompt": "ROMEO:", "tokens": 60, "temperature": 0.8, "top_k": None, "seed": 3}
    expected = httpx.post(f"{live_server}/api/text/generate", json=request, timeout=60).text
    assert shown == "ROMEO:" + expected
    expect(page.locator("#generate")).to_be_enabled(timeout=10000)
    page.locator("#output .char").nth(40).click()
    expect(page.locator("#output .char.selected")).to_have_count(1)
    expect(page.locator("#head-grid .cell")).to_have_count(4 * 4, timeout=15000)
    page.wait_for_function("() => document.querySelectorAll('#output .char.attended').length > 10", timeout=15000)

    def backgrounds() -> list[str]:
        return page.evaluate(
            "() => Array.from(document.querySelectorAll('#output .char')).slice(0, 41)"
            ".map(s => getComputedStyle(s).backgroundColor)"
        )

    mean = backgrounds()
    assert len(set(mean)) > 3  # earlier characters are shaded by how much character 40 attends to them
    page.select_option("#layer", index=1)
    page.select_option("#head", index=1)
    assert backgrounds() != mean  # another head, another pattern
    screenshot(page, tmp_path, "text")


def test_seq2seq_writes_the_models_output_and_shows_three_kinds_of_attention(page, live_server, tmp_path):
    from labformer.serve.models import PRETRAINED
    from labformer.training.translation import open_translation_run
    from labformer.translate import translate_texts

    expect = playwright.expect
    page.goto("/seq2seq")
    expect(page.locator("#s2s-output")).to_have_attribute("data-done", "true", timeout=20000)  # the first input
    text = "March 3rd, 2021"
    page.fill("#s2s-input", text)
    page.click("#translate")
    api = httpx.post(f"{live_server}/api/seq2seq/translate", json={"text": text, "beam": 1}, timeout=60).json()
    written = page.locator("#s2s-output .written > span")
    expect(written).to_have_count(len(api["output_tokens"]), timeout=20000)
    expect(page.locator("#s2s-output")).to_have_attribute("data-done", "true", timeout=20000)
    model, data = open_translation_run(PRETRAINED / "dates")
    assert "".join(written.all_text_contents()) == "".join(api["output_tokens"])
    assert api["output"] == translate_texts(model, data, [text])[0] == "2021-03-03"

    def shading() -> list[str]:
        return page.evaluate(
            "() => Array.from(document.querySelectorAll('#s2s-source .s2s-char')).map(s => s.style.backgroundColor)"
        )

    page.locator("#s2s-output .written").nth(5).click()  # the first month digit of 2021-03-03
    expect(page.locator("#s2s-output .written.selected")).to_have_count(1)
    month = shading()
    assert len(month) == len(text) and len(set(month)) > 2  # the input shaded by how much it is read
    page.locator("#s2s-output .written").nth(0).click()  # the first year digit: another pattern
    assert shading() != month
    layers, heads = model.config.decoder_layers, model.config.num_heads
    expect(page.locator("#s2s-grid .cell")).to_have_count(layers * heads)
    for tab, title, count in (("#tab-encoder", "Encoder self-attention", model.config.encoder_layers * heads),
                              ("#tab-decoder", "Decoder self-attention", layers * heads),
                              ("#tab-cross", "Cross-attention", layers * heads)):  # fmt: skip
        page.click(tab)
        expect(page.locator(tab)).to_have_attribute("aria-selected", "true")
        expect(page.locator("#map-title")).to_contain_text(title)
        expect(page.locator("#s2s-grid .cell")).to_have_count(count)
    page.locator("#s2s-grid .cell").nth(1).click()  # enlarge one head
    expect(page.locator("#map-title")).to_contain_text("layer 1, head 2")
    screenshot(page, tmp_path, "seq2seq")


def test_the_digits_page_speaks_french_and_its_link_keeps_the_language(french_page, tmp_path):
    page, expect = french_page, playwright.expect
    page.goto("/digits")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("nav:not(.languages) a")).to_have_text(["Chiffres", "Texte", "Seq2seq", "Rapport du labo"])
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Chiffres")
    expect(page.locator("#model-info")).to_have_text(
        "Modèle : modèle de chiffres fourni — 98,70 % d'exactitude en test sur MNIST", timeout=15000
    )
    expect(page.locator("#status")).to_have_text("Dessinez un chiffre sur le carré noir (ou déposez-y une image).")
    stroke(page, [(140, 40), (141, 140), (142, 240)])  # a one
    expect(page.locator("#prediction")).to_have_text("1", timeout=15000)
    french_percent = r"\d{1,3},\d\s%"  # 98,7 % (a comma, a non-breaking space)
    expect(page.locator("#status")).to_have_text(re.compile(rf"^Le modèle lit un «\s1\s» \(sûr à {french_percent}\)\."))
    expect(page.locator("#bars .pct").nth(1)).to_have_text(re.compile(rf"^{french_percent}$"))
    expect(page.locator("#heads .col-label").first).to_have_text("tête 1")
    expect(page.locator("#zoom-detail")).to_contain_text("Patch le plus clair : rangée")
    screenshot(page, tmp_path, "digits-fr")
    page.click("#copy-link")  # the clipboard, or the link selected in a field where there is none
    expect(page.locator("#status")).to_have_text(re.compile("^(Lien copié|Copiez le lien sélectionné)"))
    shared = page.locator("#share-link")
    link = shared.input_value() if shared.count() else page.evaluate("navigator.clipboard.readText()")
    assert "lang=fr" in link and "#digit=" in link
    page.click("nav.languages a[hreflang=en]")  # the same view, in English
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#prediction")).to_have_text("1", timeout=15000)
    expect(page.locator("#status")).to_contain_text("The model reads a “1”")
    assert "lang=en" in page.url and "#digit=" in page.url


def test_the_seq2seq_page_warns_in_french_of_a_date_that_does_not_exist(french_page):
    page, expect = french_page, playwright.expect
    page.goto("/seq2seq")
    expect(page.locator("#s2s-output")).to_have_attribute("data-done", "true", timeout=20000)  # the first input
    expect(page.locator("#tab-cross")).to_have_text("Attention croisée")
    page.fill("#s2s-input", "31 février 2021")
    page.click("#translate")
    expect(page.locator("#status")).to_have_text(
        "« 31 février 2021 » → 2021-02-31 — pas une date : février 2021 compte 28 jours", timeout=20000
    )
    expect(page.locator("#status")).to_have_class(re.compile(r"\bwarn\b"))
    expect(page.locator("#s2s-output .written small").first).to_have_text(re.compile(r"^\d,\d\d$"))  # 1,00
    expect(page.locator("#map-title")).to_contain_text("Attention croisée, couche 1")

    def doubtful(route) -> None:  # noqa: ANN001 - the server's answer, made unsure and out of the years learnt
        answer = route.fetch().json()
        answer.update(least_probability=0.21, unsure=True, output="3050-03-03")
        answer["calendar"] = {"text": "3050-03-03", "problem": None, "year": 3050, "month": 3, "days": 31,
                              "outside": True, "real": True}  # fmt: skip
        route.fulfill(json=answer)

    page.route("**/api/seq2seq/translate", doubtful)
    page.fill("#s2s-input", "3 mars 3050")
    page.click("#translate")
    expect(page.locator("#status")).to_have_text(
        "« 3 mars 3050 » → 3050-03-03 — l'année 3050 est hors de 1000–2999, les années apprises ; "
        "peu sûr : son caractère le moins probable a une probabilité de 0,21 (sous 0,5)",
        timeout=20000,
    )


def test_lab_page_builds_and_shows_the_report(page, tmp_path):
    page.goto("/lab")
    playwright.expect(page.locator("#lab-message")).to_contain_text("labformer lab all", timeout=10000)
    page.click("#build")  # every experiment of the lab, on the server
    report = page.frame_locator("#report")
    playwright.expect(report.locator("body")).to_contain_text("Transformers", timeout=120000)
    screenshot(page, tmp_path, "lab")


def test_no_request_leaves_the_machine(page):
    outside: list[str] = []
    page.on(
        "request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else outside.append(r.url)
    )
    for path in ("/digits", "/text", "/seq2seq", "/lab"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    assert not outside, outside
