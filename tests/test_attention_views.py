"""``labformer attention``: the pages' views written without a browser (PNG, SVG, standalone HTML), each
showing the numbers the web API answers (which tests/test_serve.py checks against the models)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from labformer.data import load_mnist
from labformer.serve import views
from labformer.serve.models import PRETRAINED, DigitModel, Seq2SeqModel, TextModel


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("digit") / "seven.png"
    Image.fromarray(load_mnist().test.images[0, 0].numpy()).save(path)  # a 7
    return path


def test_the_digit_view_shows_the_selected_heads_attention(seven):
    answer = DigitModel(PRETRAINED / "digits").predict(seven.read_bytes())
    figure = views.digit_view(answer, layer=2, head=3)
    enlarged = figure.axes[3]
    assert enlarged.get_title() == "layer 2, head 3"
    cls = np.asarray(answer["attention"]["cls"])[1, 2]
    grid = answer["attention"]["grid"]
    shown = np.asarray(enlarged.images[1].get_array())
    np.testing.assert_allclose(shown, cls.reshape(grid, grid) / cls.max(), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(figure.axes[0].images[0].get_array()), np.asarray(answer["input"]))
    bars = [patch.get_width() for patch in figure.axes[1].patches]
    assert bars == pytest.approx(answer["probabilities"])
    layers, heads = answer["attention"]["layers"], answer["attention"]["heads"]
    assert len(figure.axes) == 4 + layers * heads
    outlined = [axis for axis in figure.axes[4:] if axis.spines["top"].get_linewidth() > 2]
    assert outlined == [figure.axes[4 + 1 * heads + 2]]  # layer 2, head 3 in the grid


def test_a_colour_picture_is_drawn_in_its_colours():
    """A photo model's input (H, W, 3) of 0-255 values: matplotlib reads float colours as 0-1, so the view
    must hand it the bytes, unchanged, in every panel that shows the picture."""
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (8, 8, 3))
    cls = rng.random((1, 2, 4))
    answer = {
        "input": picture.tolist(), "classes": ["a", "b"], "probabilities": [0.25, 0.75], "prediction": "b",
        "attention": {"layers": 1, "heads": 2, "grid": 2, "cls": cls.tolist(), "rollout": cls[0, 0].tolist()},
    }  # fmt: skip
    figure = views.digit_view(answer)
    for axis in (figure.axes[0], figure.axes[2], figure.axes[3], *figure.axes[4:]):
        shown = np.asarray(axis.images[0].get_array())
        assert shown.dtype == np.uint8
        np.testing.assert_array_equal(shown, picture)


def test_the_text_view_shades_each_character_by_the_chosen_characters_attention():
    answer = TextModel(PRETRAINED / "text").attention("ROMEO: Wherefore art thou")
    figure = views.text_view(answer, position=10, layer=1, head=2)
    weights = np.asarray(answer["attention"])[0, 1, 9]
    cells = [patch for patch in figure.axes[0].patches]
    assert len(cells) == len(answer["tokens"])
    reds = np.array([cell.get_facecolor()[2] for cell in cells[:10]])  # YlOrRd: less blue for more weight
    assert int(reds.argmin()) == int(weights[:10].argmax())
    assert all(cell.get_facecolor() == (1, 1, 1, 1) for cell in cells[10:])  # after it: not attended (causal)
    assert cells[9].get_edgecolor() != cells[8].get_edgecolor()  # the attending character is outlined


def test_the_seq2seq_view_shows_one_kind_for_every_head():
    answer = Seq2SeqModel(PRETRAINED / "dates").translate("3 mars 2021")
    figure = views.seq2seq_view(answer, "cross")
    cross = np.asarray(answer["attention"]["cross"])
    assert len(figure.axes) == cross.shape[0] * cross.shape[1]
    np.testing.assert_allclose(np.asarray(figure.axes[-1].images[0].get_array()), cross[-1, -1])
    assert "2021-03-03" in figure.texts[0].get_text()


def test_the_command_writes_png_svg_and_an_html_page_that_opens_offline(seven, tmp_path):
    for suffix in (".png", ".svg", ".html"):
        out = tmp_path / f"view{suffix}"
        result = run_cli("attention", str(PRETRAINED / "digits"), "--image", str(seven), "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert "prediction: 7" in result.stdout
    with Image.open(tmp_path / "view.png") as image:
        assert image.format == "PNG" and image.width > 400
    assert (tmp_path / "view.svg").read_text().lstrip().startswith("<?xml")
    page = (tmp_path / "view.html").read_text()
    assert "<svg" in page and "prediction: 7" in page and "shipped digits model" in page
    assert not re.search(r"<script|<link|src=\"http|href=\"http|@import", page)  # nothing to fetch
    png = re.search(r'href="data:image/png;base64,([^"]+)"', page).group(1)
    import base64

    with Image.open(io.BytesIO(base64.b64decode(png))) as image:
        assert image.format == "PNG"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_the_command_reads_a_text_for_gpt_and_seq2seq_runs(tmp_path):
    out = tmp_path / "text.png"
    result = run_cli("attention", str(PRETRAINED / "text"), "--text", "ROMEO:", "--out", str(out), "--head", "1")
    assert result.returncode == 0 and Image.open(out).format == "PNG", result.stderr
    out = tmp_path / "dates.svg"
    result = run_cli("attention", str(PRETRAINED / "dates"), "--text", "3 mars 2021", "--out", str(out))
    assert result.returncode == 0 and "output: '2021-03-03'" in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["digits", "--image", "SEVEN", "--out", "view.gif"], "--out must end in .png, .svg, .html; got view.gif"),
        (["digits", "--image", "SEVEN", "--out", "v.png", "--layer", "9"], "--layer must be between 1 and 3; got 9"),
        (["digits", "--image", "SEVEN", "--out", "v.png", "--head", "0"], "--head must be between 1 and 4; got 0"),
        (["digits", "--text", "x", "--out", "v.png"], "holds a ViT run: pass --image FILE"),
        (["digits", "--image", "missing.png", "--out", "v.png"], "--image missing.png: cannot read it"),
        (["text", "--image", "SEVEN", "--out", "v.png"], "holds a gpt run: pass --text TEXT"),
        (["text", "--text", "ROMEO", "--out", "v.png", "--position", "6"], "--position must be between 1 and 5"),
        (["dates", "--text", "3 mars", "--out", "v.png", "--kind", "self"], "--kind must be one of encoder"),
        (["dates", "--text", "3 mars", "--out", "v.png", "--beam", "0"], "--beam must be between 1 and 16"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(args, message, seven, tmp_path):
    args = [str(PRETRAINED / args[0]), *(str(seven) if a == "SEVEN" else a for a in args[1:])]
    result = run_cli("attention", *[a if a != "v.png" else str(tmp_path / "v.png") for a in args])
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "v.png").exists()
