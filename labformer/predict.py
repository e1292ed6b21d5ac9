"""Classifying image files with a trained ViT: any size and colour, MNIST-style preprocessing."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

__all__ = ["load_image", "predict_images"]


def _mnist_like(grey: np.ndarray, size: int) -> np.ndarray:
    """Light-on-dark digit centred as in MNIST: ink fitted in a 20/28 box, centred by its mass."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 127:  # dark ink on a light background: invert to MNIST's convention
        grey = 255 - grey
    ys, xs = np.nonzero(grey > 0.25 * grey.max()) if grey.max() > 0 else ([], [])
    if len(ys) == 0:
        return np.zeros((size, size), dtype=np.uint8)
    crop = grey[min(ys) : max(ys) + 1, min(xs) : max(xs) + 1]
    box = round(size * 20 / 28)
    scale = box / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    resized = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)
    canvas = np.zeros((size, size))
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = resized
    total = canvas.sum()
    if total > 0:  # shift the centre of mass to the centre, as MNIST does
        cy = (canvas.sum(1) * np.arange(size)).sum() / total
        cx = (canvas.sum(0) * np.arange(size)).sum() / total
        canvas = np.roll(canvas, (round(size / 2 - 0.5 - cy), round(size / 2 - 0.5 - cx)), axis=(0, 1))
    return np.clip(canvas, 0, 255).astype(np.uint8)


def load_image(source: Path | bytes, *, channels: int, size: int, mnist_style: bool) -> Tensor:
    """An image file (a path, or its bytes) as uint8 (C, size, size), ready for the data set's normalisation."""
    name = "the image" if isinstance(source, bytes) else f"image {source}"
    try:
        with Image.open(BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            picture = image.convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {name}: {error}") from None
    if channels == 1 and mnist_style:
        return torch.from_numpy(_mnist_like(np.asarray(picture), size))[None]
    resized = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return torch.from_numpy(resized.copy()).reshape(size, size, channels).permute(2, 0, 1)


@torch.inference_mode()
def predict_images(model: nn.Module, run: dict[str, Any], paths: list[Path], top: int = 3) -> list[dict[str, Any]]:
    """Per file: {"path", "prediction", "top": [(class, probability), ...]}; all files read first."""
    config = model.config
    images = torch.stack(
        [
            load_image(
                p, channels=config.channels, size=config.image_size, mnist_style=run["train"]["dataset"] == "mnist"
            )
            for p in paths
        ]
    )
    device = next(model.parameters()).device
    mean = torch.tensor(run["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(run["std"], device=device).view(1, -1, 1, 1)
    probabilities = model((images.to(device).float() / 255 - mean) / std).softmax(-1).cpu()
    classes = run["classes"]
    results = []
    for path, p in zip(paths, probabilities):
        values, indices = p.topk(min(top, len(classes)))
        results.append(
            {
                "path": str(path),
                "prediction": classes[int(indices[0])],
                "top": [(classes[int(i)], round(float(v), 4)) for v, i in zip(values, indices)],
            }
        )
    return results
