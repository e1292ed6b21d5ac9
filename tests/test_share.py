"""Saving and sharing the pages' views in a real browser (headless Chromium driven by Playwright): each
"Save PNG" writes a PNG of the view's size, and a page's link, opened in a fresh browser, shows the same
prediction or text with the same head selected. A garbled link is ignored without a script error."""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

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
stroke = script("screenshots").stroke
generate = script("screenshots").generate
expect = playwright.expect


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def fresh(browser, live_server):
    """A function opening a new browser context (no shared state, as on another student's laptop)."""
    contexts, errors = [], []

    def open_page():
        context = browser.new_context(
            base_url=live_server, viewport={"width": 1280, "height": 1000}, accept_downloads=True
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, errors  # no JavaScript error on any page


def saved_png(page, button, tmp_path: Path) -> tuple[str, Image.Image]:
    with page.expect_download() as download:
        button.click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return download.value.suggested_filename, image


def canvas_size(page, selector: str) -> tuple[int, int]:
    return tuple(page.eval_on_selector(selector, "c => [c.width, c.height]"))


def test_a_digits_views_are_saved_as_pngs_of_their_size(fresh, tmp_path):
    page = fresh()
    page.goto("/digits")
    stroke(page, [(70, 50), (210, 50), (120, 240)])  # a seven
    expect(page.locator("body[data-predicting=no]")).to_have_count(1, timeout=15000)
    expect(page.locator("#prediction")).to_have_text("7", timeout=15000)
    page.locator("#heads canvas.head").nth(6).click()  # layer 2, head 3
    expect(page.locator("#zoom-label")).to_have_text("Layer 2, head 3")
    name, image = saved_png(page, page.locator("button[data-save=zoom]"), tmp_path)
    width, height = canvas_size(page, "#zoom-canvas")
    assert name == "digit-7-layer2-head3.png" and image.size == (width, height + 26)  # the map and its caption
    name, image = saved_png(page, page.locator("button[data-save=heads]"), tmp_path)
    cell, _ = canvas_size(page, "#heads canvas.head")
    layers, heads = 3, 4  # the shipped ViT
    assert name == "digit-7-heads.png" and image.size == (70 + heads * (cell + 4), 22 + layers * (cell + 4))
    zoom = page.eval_on_selector("#heads canvas.head:nth-of-type(7)", "c => c.toDataURL()")  # layer 2, head 3
    cell_png = Image.open(__import__("io").BytesIO(base64.b64decode(zoom.split(",")[1]))).convert("RGB")
    x, y = 70 + 2 * (cell + 4), 22 + 1 * (cell + 4)
    assert image.convert("RGB").crop((x, y, x + cell, y + cell)).tobytes() == cell_png.tobytes()
    name, image = saved_png(page, page.locator("button[data-save=rollout]"), tmp_path)
    width, height = canvas_size(page, "#rollout")
    assert name == "digit-7-rollout.png" and image.size == (width, height + 26)


def test_a_digits_link_reopens_the_same_prediction_and_head(fresh):
    page = fresh()
    page.goto("/digits")
    stroke(page, [(140, 40), (141, 140), (142, 240)])  # a one
    expect(page.locator("body[data-predicting=no]")).to_have_count(1, timeout=15000)  # the whole stroke answered
    expect(page.locator("#prediction")).to_have_text("1", timeout=15000)
    page.locator("#heads canvas.head").nth(9).click()  # layer 3, head 2
    expect(page.locator("#zoom-label")).to_have_text("Layer 3, head 2")
    link = page.url
    assert re.search(r"#digit=[A-Za-z0-9_-]+&layer=3&head=2$", link), link
    assert len(link) < 3000  # a link one can send
    bars = page.locator("#bars").inner_text()
    other = fresh()
    other.goto(link)
    expect(other.locator("#prediction")).to_have_text("1", timeout=15000)
    expect(other.locator("#zoom-label")).to_have_text("Layer 3, head 2")
    assert other.locator("#bars").inner_text() == bars  # the same ten probabilities
    expect(other.locator('#heads canvas.head.active[data-layer="2"][data-head="1"]')).to_have_count(1)
    same = "() => document.getElementById('input28').toDataURL()"
    assert other.evaluate(same) == page.evaluate(same)  # the same 28×28 input, pixel for pixel


def test_a_garbled_link_is_ignored_with_a_message(fresh):
    page = fresh()
    page.goto("/digits#digit=%%%not-base64&layer=zz&head=-4")
    expect(page.locator("#status")).to_have_text(re.compile("could not be read"), timeout=15000)
    expect(page.locator("#prediction")).to_have_class(re.compile(r"\bempty\b"))


def test_a_texts_link_writes_the_same_text_and_selects_the_same_head(fresh, tmp_path):
    page = fresh()
    page.goto("/text")
    expect(page.locator("#generate")).to_be_enabled(timeout=15000)
    page.fill("#prompt", "ROMEO:")
    page.fill("#tokens", "50")
    page.fill("#seed", "")  # no seed: the page draws one and puts it in the link
    page.click("#generate")
    expect(page.locator("#output .char")).to_have_count(len("ROMEO:") + 50, timeout=30000)
    expect(page.locator("#generate")).to_be_enabled(timeout=10000)
    text = "".join(page.locator("#output .char").all_text_contents())
    index = next(i for i in range(40, len(text)) if text[i] != "\n")  # a character one can click
    page.locator("#output .char").nth(index).click()
    expect(page.locator("#head-grid .cell")).to_have_count(4 * 4, timeout=15000)
    page.locator('#head-grid .cell[data-layer="1"][data-head="2"]').click()  # layer 2, head 3
    page.wait_for_function("() => location.hash.includes('head=3')", timeout=15000)
    link = page.url
    assert re.search(r"seed=\d+", link) and f"char={index + 1}" in link and "layer=2" in link, link

    def shading(p) -> list[str]:
        return p.evaluate(
            "() => Array.from(document.querySelectorAll('#output .char')).map(s => s.style.backgroundColor)"
        )

    name, image = saved_png(page, page.locator("#save-grid"), tmp_path)
    cell_w, cell_h = canvas_size(page, "#head-grid .cell canvas")
    assert name == f"text-char{index + 1}-layer2-head3-heads.png"
    assert image.size == (70 + 4 * (cell_w + 4), 22 + 4 * (cell_h + 4))
    name, image = saved_png(page, page.locator("#save-text"), tmp_path)
    lines, column = 1, 0
    for character in text[:-1]:  # 80 characters to a line, a new line after each line break
        if character == "\n" or column == 79:
            lines, column = lines + 1, 0
        else:
            column += 1
    assert name == f"text-char{index + 1}-layer2-head3-shading.png" and image.size == (80 * 11 + 16, lines * 22 + 16)

    other = fresh()
    other.goto(link)
    expect(other.locator("#output .char.selected")).to_have_count(1, timeout=30000)
    assert "".join(other.locator("#output .char").all_text_contents()) == text  # the same text, written again
    assert other.locator("#output .char.selected").get_attribute("data-index") == str(index)
    expect(other.locator('#head-grid .cell.active[data-layer="1"][data-head="2"]')).to_have_count(1, timeout=15000)
    other.wait_for_function("() => document.querySelectorAll('#output .char.attended').length > 10", timeout=15000)
    assert shading(other) == shading(page)  # the same head's attention shades the same characters


def test_a_garbled_text_link_is_ignored_with_a_message(fresh):
    page = fresh()
    page.goto("/text#prompt=ROMEO&tokens=abc&seed=-1&temperature=hot")
    expect(page.locator("#status")).to_have_text(re.compile("could not be read"), timeout=15000)
    prompt = page.input_value("#prompt")
    assert page.locator("#output .char").count() == len(prompt)  # the page's own prompt: nothing was generated


def test_a_seq2seq_link_reads_the_same_input_and_shows_the_same_map(fresh, tmp_path):
    page = fresh()
    page.goto("/seq2seq")
    expect(page.locator("#s2s-output[data-done=true]")).to_have_count(1, timeout=30000)  # the default input
    page.fill("#s2s-input", "le 3 mars 2021")
    page.click("#translate")
    expect(page.locator("#status")).to_have_text(re.compile("2021-03-03"), timeout=30000)
    expect(page.locator("#s2s-output[data-done=true]")).to_have_count(1, timeout=30000)
    page.click("#tab-encoder")
    page.locator("#s2s-grid .cell").nth(2 * 4 - 2).click()  # layer 2, head 3 (4 heads a layer)
    page.locator("#s2s-output .written").nth(6).click()  # the month's first digit
    title = page.locator("#map-title").inner_text()
    assert title.startswith("Encoder self-attention, layer 2, head 3"), title
    link = page.url
    assert "kind=encoder" in link and "layer=2" in link and "head=3" in link and "char=7" in link, link
    name, image = saved_png(page, page.locator("#save-map"), tmp_path)
    width, height = canvas_size(page, "#s2s-map")
    assert name == "seq2seq-encoder-layer2-head3-map.png" and image.size == (width, height + 26)
    name, image = saved_png(page, page.locator("#save-grid"), tmp_path)
    cell_w, cell_h = canvas_size(page, "#s2s-grid .cell canvas")
    assert image.size == (70 + 4 * (cell_w + 4), 22 + 2 * (cell_h + 4))  # 2 encoder layers × 4 heads

    other = fresh()
    other.goto(link)
    expect(other.locator("#s2s-output[data-done=true]")).to_have_count(1, timeout=30000)
    expect(other.locator("#map-title")).to_have_text(title)
    assert other.input_value("#s2s-input") == "le 3 mars 2021"
    expect(other.locator("#tab-encoder[aria-selected=true]")).to_have_count(1)
    assert other.locator("#s2s-output .written.selected").get_attribute("data-index") == "6"


def test_the_lab_page_offers_no_build_on_a_server_that_does_not_allow_it(fresh, browser, tmp_path):
    from labformer.serve import load_app

    app, _ = load_app([], lab_dir=tmp_path / "lab-report", runs_root=tmp_path / "no-runs")  # no allow_build
    server, url = script("screenshots").serve_in_thread(app)
    try:
        context = browser.new_context(base_url=url)
        page = context.new_page()
        page.goto("/lab")
        expect(page.locator("#lab-message")).to_contain_text("--allow-build", timeout=15000)
        expect(page.locator("#build")).to_be_hidden()
        context.close()
    finally:
        server.should_exit = True
