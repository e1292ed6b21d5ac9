"""`labformer predict` on ordinary pictures, with the shipped digits model: transparent areas are paper,
a picture with no ink says so, a folder means its images, and one broken file does not stop the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import labformer
from labformer.cli import main
from labformer.data import load_mnist
from labformer.predict import image_paths, predict_images
from labformer.runs import load_run

SHIPPED = Path(labformer.__file__).parent / "serve" / "pretrained" / "digits"


@pytest.fixture(scope="module")
def shipped():
    return load_run(SHIPPED)


@pytest.fixture(scope="module")
def digits() -> list[tuple[np.ndarray, int]]:
    """The first ten MNIST test digits (light ink on black, 28 x 28) and their labels."""
    test = load_mnist().test
    return [(test.images[i, 0].numpy(), int(test.labels[i])) for i in range(10)]


def on_transparent(ink: np.ndarray, colour: int, size: int = 140) -> Image.Image:
    """A digit drawn in ``colour`` on a transparent sheet: the ink is the alpha channel, as a drawing app
    or a canvas export writes it (the colour under transparent pixels is black, as canvases leave it)."""
    alpha = Image.fromarray(ink).resize((size, size), Image.Resampling.BILINEAR)
    rgb = np.zeros((size, size, 3), dtype=np.uint8)
    rgb[np.asarray(alpha) > 0] = colour
    picture = Image.fromarray(rgb).convert("RGBA")
    picture.putalpha(alpha)
    return picture


def predictions(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    code = main(["predict", str(SHIPPED), *args])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip().splitlines()


@pytest.mark.parametrize(("colour", "name"), [(0, "black"), (255, "white")])
def test_digits_on_a_transparent_sheet_are_read_like_the_plain_picture(colour, name, digits, tmp_path, capsys):
    plain, drawn = [], []
    for i, (ink, _) in enumerate(digits):
        Image.fromarray(ink).save(tmp_path / f"plain{i}.png")
        on_transparent(ink, colour).save(tmp_path / f"{name}{i}.png")
        plain.append(str(tmp_path / f"plain{i}.png"))
        drawn.append(str(tmp_path / f"{name}{i}.png"))
    code, plain_lines, _ = predictions(capsys, *plain)
    assert code == 0
    code, drawn_lines, _ = predictions(capsys, *drawn, "--json")
    assert code == 0
    read = [json.loads(line)["prediction"] for line in drawn_lines]
    labels = [str(label) for _, label in digits]
    expected = [line.split(": ", 1)[1].split(" ", 1)[0] for line in plain_lines]
    assert sum(r == e for r, e in zip(read, expected)) >= 9  # as the plain digits, bar a pixel's rounding
    assert sum(r == label for r, label in zip(read, labels)) >= 9  # and right
    assert read.count("1") <= labels.count("1") + 1  # not the "1" that a black sheet used to give


@pytest.mark.parametrize(
    "picture",
    [
        Image.new("L", (64, 64), 255),  # blank paper
        Image.new("RGB", (50, 80), (128, 128, 128)),  # uniform grey
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)),  # fully transparent
        Image.fromarray(np.random.default_rng(0).normal(235, 3, (64, 64)).clip(0, 255).astype(np.uint8)),  # grain
    ],
    ids=["white", "grey", "transparent", "paper-grain"],
)
def test_a_picture_with_no_ink_says_no_digit(picture, tmp_path, capsys, shipped):
    path = tmp_path / "blank.png"
    picture.save(path)
    code, out, err = predictions(capsys, str(path))
    assert code == 0 and err == []
    assert out == [f"{path}: no digit found in {path} (nothing stands out from the paper)"]
    (result,) = predict_images(*shipped, [path])
    assert result == {"path": str(path), "empty": True, "prediction": None, "top": []}


def test_a_broken_file_gets_its_own_line_and_the_others_are_answered(digits, tmp_path, capsys, shipped):
    good = []
    for i in (0, 1):
        Image.fromarray(digits[i][0]).save(tmp_path / f"good{i}.png")
        good.append(tmp_path / f"good{i}.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    missing = tmp_path / "missing.png"
    code, out, err = predictions(capsys, str(good[0]), str(broken), str(missing), str(good[1]))
    assert code == 2
    model, run = shipped
    alone = [predict_images(model, run, [path])[0] for path in good]  # each file read on its own
    assert out == [
        f"{r['path']}: {r['prediction']} ({', '.join(f'{label} {p:.2f}' for label, p in r['top'])})" for r in alone
    ]
    assert err[0].startswith(f"labformer: error: cannot read image {broken}")
    assert err[1:] == [
        f"labformer: error: image {missing} not found",
        "labformer: error: 2 of 4 images could not be read",
    ]


def test_a_folder_means_its_images(digits, tmp_path, capsys):
    for i in (2, 0, 1):
        Image.fromarray(digits[i][0]).save(tmp_path / f"d{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    assert image_paths([str(tmp_path)]) == [tmp_path / f"d{i}.png" for i in (0, 1, 2)]
    code, out, _ = predictions(capsys, str(tmp_path), "--json")
    assert code == 0
    assert [json.loads(line)["prediction"] for line in out] == [str(digits[i][1]) for i in (0, 1, 2)]
    empty = tmp_path / "sub"
    code, out, err = predictions(capsys, str(empty))
    assert code == 2 and err == [f"labformer: error: folder {empty} holds no image (.png, .jpg, .jpeg, .bmp, .gif, "
                                 ".webp, .tif, .tiff)"]  # fmt: skip
