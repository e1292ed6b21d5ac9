"""Classifying image files with a trained ViT: any size and colour, MNIST-style preprocessing."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from labformer.config import require_non_negative
from labformer.data.augment import shifted_views

__all__ = ["IMAGE_SUFFIXES", "image_paths", "is_blank", "load_image", "predict_images"]

# What a folder given to ``predict`` is searched for (Pillow reads each; anything else in it is left alone).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _ink(grey: np.ndarray) -> np.ndarray:
    """How much ink each pixel holds, 0-255, whatever the picture: dark ink on light paper or light ink on
    a dark pad, unevenly lit, noisy. The background is read from the border (a plane through the median of
    each side), subtracted, and what is left within three deviations of the paper's grain is noise."""
    g = grey.astype(np.float64)
    sides = [np.median(g[0]), np.median(g[-1]), np.median(g[:, 0]), np.median(g[:, -1])]  # top, bottom, left, right
    paper = float(np.median(sides))
    if paper - np.percentile(g, 1) > np.percentile(g, 99) - paper:  # the ink is darker than the paper
        g, sides = 255 - g, [255 - side for side in sides]
    h, w = g.shape
    background: np.ndarray | float = float(np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    if min(h, w) >= 16:  # large enough for paper on every side: follow the lighting across it
        ys, xs = np.linspace(-0.5, 0.5, h)[:, None], np.linspace(-0.5, 0.5, w)[None, :]
        background = np.mean(sides) + (sides[1] - sides[0]) * ys + (sides[3] - sides[2]) * xs
    ink = g - background
    noise = 0.0  # the paper's grain, read on the border where the picture is large enough to have paper there
    if min(h, w) >= 16:
        edge = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
        noise = 1.4826 * np.median(np.abs(edge - np.median(edge)))
    ink = np.clip(ink, 0, None)
    strong = np.percentile(ink, 99.5)
    if strong < max(16.0, 4 * noise):  # nothing stands out from the paper's grain
        return np.zeros_like(g)
    floor = min(3 * noise, 0.5 * strong)
    return np.clip((ink - floor) / (strong - floor), 0, 1) * 255


def _stroke_width(canvas: np.ndarray) -> float:
    """Mean stroke width in pixels: inked area over half its boundary (a stroke w wide and L long has
    area w·L and about 2·L boundary pixels); 2 for strokes one pixel wide."""
    ink = canvas > 127
    padded = np.pad(ink, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return float(ink.sum() / max((ink.sum() - inner.sum()) / 2, 1))


def _mnist_strokes(canvas: np.ndarray, widest: float = 4.5) -> np.ndarray:
    """Thins strokes wider than MNIST's (a bold font, a marker) by grey erosion, one pixel a side at a time:
    ``widest`` is about the 95th percentile of MNIST's stroke widths at 28 x 28 (median 2.7)."""
    scale = canvas.shape[0] / 28
    for _ in range(2):
        if _stroke_width(canvas) <= widest * scale:
            break
        padded = np.pad(canvas, 1)
        shifted = [padded[1 + dy : 1 + dy + canvas.shape[0], 1 + dx : 1 + dx + canvas.shape[1]] for dy in (-1, 0, 1)
                   for dx in (-1, 0, 1) if abs(dy) + abs(dx) <= 1]  # fmt: skip
        canvas = np.minimum.reduce(shifted)
    return canvas


def _mnist_like(grey: np.ndarray, size: int) -> np.ndarray:
    """Light-on-dark digit centred as in MNIST: ink fitted in a 20/28 box, centred by its mass."""
    grey = _ink(grey)
    if grey.max() <= 0:
        return np.zeros((size, size), dtype=np.uint8)
    ys, xs = np.nonzero(grey > 0.25 * grey.max())
    crop = np.rint(grey).astype(np.uint8)[min(ys) : max(ys) + 1, min(xs) : max(xs) + 1]
    box = round(size * 20 / 28)
    scale = box / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    resized = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)
    canvas = np.zeros((size, size))
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = resized
    canvas = _mnist_strokes(canvas)
    total = canvas.sum()
    if total > 0:  # shift the centre of mass to the centre, as MNIST does
        cy = (canvas.sum(1) * np.arange(size)).sum() / total
        cx = (canvas.sum(0) * np.arange(size)).sum() / total
        canvas = np.roll(canvas, (round(size / 2 - 0.5 - cy), round(size / 2 - 0.5 - cx)), axis=(0, 1))
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _on_paper(image: Image.Image) -> Image.Image:
    """The picture with its transparent areas made paper: composited on white when what is drawn is dark
    (a black digit on a transparent sheet, as drawing apps and canvas exports write it), on black when it
    is light. Opaque pictures are returned as they are."""
    if image.mode == "P" and "transparency" in image.info or image.mode in ("PA", "La"):
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "RGBa"):
        return image
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba, dtype=np.float64)[..., 3] / 255
    if alpha.min() == 1:
        return rgba.convert("RGB")
    grey = np.asarray(rgba.convert("L"), dtype=np.float64)
    drawn = float((grey * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0  # mean grey of what is seen
    paper = 255 if drawn < 128 else 0
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (paper, paper, paper, 255)), rgba).convert("RGB")


def is_blank(pixels: Tensor) -> bool:
    """Whether a picture prepared MNIST-style by :func:`load_image` holds no ink at all (a blank or uniform
    picture, or nothing that stands out from the paper's grain): there is no digit to read."""
    return not bool(pixels.any())


def image_paths(arguments: list[str]) -> list[Path]:
    """The files to read: each argument as given, a folder as its images (sorted, by :data:`IMAGE_SUFFIXES`,
    not descending into sub-folders). A folder without images is an error naming it."""
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        else:
            paths.append(path)
    return paths


def load_image(source: Path | bytes, *, channels: int, size: int, mnist_style: bool) -> Tensor:
    """An image file (a path, or its bytes) as uint8 (C, size, size), ready for the data set's normalisation.
    Transparent areas are paper (:func:`_on_paper`)."""
    name = "the image" if isinstance(source, bytes) else f"image {source}"
    try:
        with Image.open(BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            picture = _on_paper(image).convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        reason = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(error))  # never a Python object's address
        raise ValueError(f"cannot read {name}: {reason}") from None
    if channels == 1 and mnist_style:
        return torch.from_numpy(_mnist_like(np.asarray(picture), size))[None]
    resized = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return torch.from_numpy(resized.copy()).reshape(size, size, channels).permute(2, 0, 1)


@torch.inference_mode()
def predict_images(
    model: nn.Module,
    run: dict[str, Any],
    paths: list[Path],
    top: int = 3,
    tta_shift: int = 0,
    tta_flip: bool = False,
) -> list[dict[str, Any]]:
    """Per file, in order: {"path", "prediction", "top": [(class, probability), ...]}; or {"path", "error"}
    for a file that cannot be read (the others are still answered); or, for a digit model, {"path",
    "empty": True, "prediction": None, "top": []} for a picture with no ink, rather than a confident digit.

    ``tta_shift``: test-time augmentation, the mean of the probabilities of each picture and of it moved
    this many pixels right, left, down and up (five forwards instead of one); 0: the picture alone.
    ``tta_flip``: each of those views also mirrored left-right (twice the forwards).
    """
    require_non_negative(tta_shift=tta_shift)
    config = model.config
    mnist_style = run["train"]["dataset"] == "mnist"
    results: list[dict[str, Any]] = []
    readable: list[tuple[int, Tensor]] = []
    for path in paths:
        try:
            pixels = load_image(path, channels=config.channels, size=config.image_size, mnist_style=mnist_style)
        except (ValueError, OSError) as error:
            results.append({"path": str(path), "error": str(error)})
            continue
        if mnist_style and is_blank(pixels):
            results.append({"path": str(path), "empty": True, "prediction": None, "top": []})
            continue
        results.append({"path": str(path)})
        readable.append((len(results) - 1, pixels))
    if not readable:
        return results
    images = torch.stack([pixels for _, pixels in readable])
    device = next(model.parameters()).device
    mean = torch.tensor(run["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(run["std"], device=device).view(1, -1, 1, 1)
    views = shifted_views(images.to(device), tta_shift, tta_flip)
    probabilities = torch.stack([model((view.float() / 255 - mean) / std).softmax(-1) for view in views]).mean(0).cpu()
    classes = run["classes"]
    for (index, _), p in zip(readable, probabilities):
        values, indices = p.topk(min(top, len(classes)))
        results[index]["prediction"] = classes[int(indices[0])]
        results[index]["top"] = [(classes[int(i)], round(float(v), 4)) for v, i in zip(values, indices)]
    return results
