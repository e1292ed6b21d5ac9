"""Digits that are not MNIST, to test a digit classifier on what people draw and photograph.

Two kinds, drawn from one seed, each image a greyscale PIL image of its own size:

- "pen": a digit written as pen strokes (a few shapes per digit: a 1 with or without its flag, a crossed
  or plain 7, an open or closed 4, ...), its points jittered, slanted, rotated and stretched, drawn with
  a random pen width;
- "font": a digit typed in one of the fonts shipped with matplotlib (sans, serif, mono, bold, oblique,
  Computer Modern, STIX), with a random outline width.

Then what a screen or a camera does to them: off-centre placement at a random scale on a canvas of 20 to
120 pixels, dark ink on light paper (or light on dark, as a drawing pad), uneven lighting, noise, blur
and a last shrink to a low resolution. ``write_digit_folder`` saves a set as ``<digit>/<kind>-<n>.png``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["KINDS", "render_digit", "write_digit_folder"]

KINDS = ("pen", "font")

# Each digit: one or more styles; each style: strokes; each stroke: points (x, y) in a unit box, y down.
# Arcs are written as ("arc", cx, cy, rx, ry, start_degrees, end_degrees), sampled into points.
_SHAPES: dict[int, list[list[list]]] = {
    0: [[[("arc", 0.5, 0.5, 0.32, 0.45, -90, 270)]]],
    1: [
        [[(0.5, 0.05), (0.5, 0.95)]],
        [[(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)]],
        [[(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)], [(0.3, 0.95), (0.8, 0.95)]],
    ],
    2: [
        [[("arc", 0.5, 0.3, 0.3, 0.25, 200, 380), (0.8, 0.35), (0.2, 0.95), (0.85, 0.95)]],
        [[("arc", 0.5, 0.3, 0.3, 0.25, 190, 400), (0.15, 0.92), (0.5, 0.85), (0.88, 0.95)]],
    ],
    3: [
        [[("arc", 0.48, 0.28, 0.3, 0.23, 200, 450)], [("arc", 0.48, 0.72, 0.33, 0.24, -90, 160)]],
        [[(0.2, 0.06), (0.8, 0.06), (0.45, 0.42)], [("arc", 0.48, 0.7, 0.33, 0.26, -80, 160)]],
    ],
    4: [
        [[(0.65, 0.95), (0.65, 0.05), (0.12, 0.68), (0.9, 0.68)]],
        [[(0.3, 0.05), (0.2, 0.55), (0.85, 0.55)], [(0.68, 0.25), (0.68, 0.95)]],
    ],
    5: [
        [[(0.8, 0.06), (0.3, 0.06), (0.25, 0.45)], [("arc", 0.48, 0.68, 0.32, 0.27, -150, 150)]],
    ],
    6: [
        [[("arc", 0.65, 0.55, 0.45, 0.5, 245, 170)], [("arc", 0.5, 0.72, 0.3, 0.23, 0, 360)]],
        [[(0.7, 0.05), (0.35, 0.4), ("arc", 0.5, 0.7, 0.3, 0.25, 180, 540)]],
    ],
    7: [
        [[(0.15, 0.07), (0.85, 0.07), (0.4, 0.95)]],
        [[(0.15, 0.07), (0.85, 0.07), (0.4, 0.95)], [(0.35, 0.5), (0.8, 0.5)]],
        [[(0.15, 0.2), (0.15, 0.07), (0.85, 0.07), (0.55, 0.95)]],
    ],
    8: [
        [[("arc", 0.5, 0.27, 0.26, 0.22, 0, 360)], [("arc", 0.5, 0.72, 0.32, 0.24, 0, 360)]],
        [
            [
                (0.75, 0.15),
                ("arc", 0.5, 0.27, 0.26, 0.22, -30, 200),
                (0.8, 0.75),
                ("arc", 0.5, 0.72, 0.32, 0.24, 0, 180),
                (0.25, 0.7),
                (0.75, 0.15),
            ]
        ],
    ],  # fmt: skip
    9: [
        [[("arc", 0.5, 0.3, 0.3, 0.25, 0, 360)], [(0.8, 0.3), (0.75, 0.95)]],
        [[("arc", 0.5, 0.3, 0.3, 0.25, 0, 360)], [(0.8, 0.3), ("arc", 0.45, 0.6, 0.35, 0.35, 0, 110)]],
    ],
}


def _font_files() -> list[Path]:
    """TrueType fonts that ship inside matplotlib (the same on every machine with it installed)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
        "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "cmr10.ttf", "cmss10.ttf",
        "cmtt10.ttf", "STIXGeneral.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBol.ttf",
    ]  # fmt: skip
    return [folder / name for name in names if (folder / name).exists()]


def _points(stroke: list, rng: np.random.Generator) -> np.ndarray:
    points: list[tuple[float, float]] = []
    for item in stroke:
        if isinstance(item, tuple) and item and item[0] == "arc":
            _, cx, cy, rx, ry, start, end = item
            angles = np.radians(np.linspace(start, end, max(8, int(abs(end - start) / 12))))
            points += list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))
        else:
            points.append(item)
    array = np.array(points, dtype=np.float64)
    return array + rng.normal(0, 0.025, array.shape)  # a hand never draws the same line twice


def _pen_digit(digit: int, rng: np.random.Generator, size: int) -> Image.Image:
    """White strokes on black, (size, size), the digit filling most of it."""
    style = _SHAPES[digit][rng.integers(len(_SHAPES[digit]))]
    slant, angle = rng.uniform(-0.35, 0.35), math.radians(rng.uniform(-12, 12))
    stretch = rng.uniform(0.6, 1.05)  # narrow to wide
    cos, sin = math.cos(angle), math.sin(angle)
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    width = max(1, round(size * rng.uniform(0.03, 0.16)))
    for stroke in style:
        p = _points(stroke, rng) - 0.5
        x, y = p[:, 0] * stretch - slant * p[:, 1], p[:, 1]
        x, y = x * cos - y * sin, x * sin + y * cos
        xy = [(float((u * 0.8 + 0.5) * size), float((v * 0.8 + 0.5) * size)) for u, v in zip(x, y)]
        draw.line(xy, fill=255, width=width, joint="curve")
        radius = width / 2  # round pen ends
        for u, v in (xy[0], xy[-1]):
            draw.ellipse((u - radius, v - radius, u + radius, v + radius), fill=255)
    return image


def _font_digit(digit: int, rng: np.random.Generator, size: int, fonts: list[Path]) -> Image.Image:
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), round(size * 0.8))
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    outline = int(rng.integers(0, max(1, size // 18) + 1))
    draw.text((size / 2, size / 2), str(digit), fill=255, font=font, anchor="mm", stroke_width=outline, stroke_fill=255)
    return image.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR)


def render_digit(digit: int, kind: str, rng: np.random.Generator) -> Image.Image:
    """One greyscale picture of ``digit`` ("pen" or "font"), as a screen or a camera gives it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    size = 96
    glyph = _pen_digit(digit, rng, size) if kind == "pen" else _font_digit(digit, rng, size, _font_files())
    canvas_size = int(rng.integers(20, 121))
    scale = rng.uniform(0.45, 0.95) * canvas_size / size
    glyph = glyph.resize((max(4, round(size * scale)),) * 2, Image.Resampling.LANCZOS)
    ink = np.zeros((canvas_size, canvas_size))
    room = canvas_size - glyph.size[0]
    top, left = (int(rng.integers(0, room + 1)) for _ in range(2))  # anywhere on the canvas
    ink[top : top + glyph.size[0], left : left + glyph.size[0]] = np.asarray(glyph) / 255.0
    if rng.random() < 0.3:  # a drawing pad: light ink on a dark screen
        paper, pen = rng.uniform(0, 40), rng.uniform(180, 255)
    else:  # paper: dark ink on a light background, unevenly lit
        paper, pen = rng.uniform(150, 250), rng.uniform(0, 90)
    ys, xs = np.mgrid[0:canvas_size, 0:canvas_size] / canvas_size
    light = rng.uniform(-30, 30) * (xs - 0.5) + rng.uniform(-30, 30) * (ys - 0.5)
    pixels = paper + light + (pen - paper) * ink + rng.normal(0, rng.uniform(0, 12), ink.shape)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * canvas_size / 40))
    if canvas_size > 28 and rng.random() < 0.3:  # a low-resolution photo
        low = int(rng.integers(16, 29))
        picture = picture.resize((low, low), Image.Resampling.BILINEAR)
    return picture


def write_digit_folder(folder: str | Path, per_class: int = 50, seed: int = 0) -> int:
    """Writes ``per_class`` pictures of each digit of each kind as ``folder/<digit>/<kind>-<n>.png``;
    returns how many were written. The same seed gives the same pictures."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    count = 0
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            for n in range(per_class):
                render_digit(digit, kind, rng).save(folder / str(digit) / f"{kind}-{n:03d}.png")
                count += 1
    return count
