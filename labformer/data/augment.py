"""Batch augmentation with torch ops only, on whatever device the batch lives (seeded)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "crop_and_flip", "random_affine", "shift", "shifted_views"]


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def random_affine(
    images: Tensor, *, degrees: float, translate: float, scale: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Random rotation (±degrees), translation (± fraction of the size) and zoom, per image.

    images: float (B, C, H, W) -> same shape; uncovered pixels are filled with zeros (the background
    after MNIST normalisation is handled by the caller: augment before normalising).
    """
    B, device = images.shape[0], images.device
    angle = _uniform(B, -degrees, degrees, generator, device) * math.pi / 180
    zoom = _uniform(B, scale[0], scale[1], generator, device)
    shift = _uniform(2 * B, -translate, translate, generator, device).view(B, 2) * 2  # grid units: [-1, 1]
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_and_flip(images: Tensor, *, padding: int, generator: torch.Generator) -> Tensor:
    """Random crop after zero padding, and a random horizontal flip, per image: (B, C, H, W) -> same."""
    B, C, H, W = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=device)
    rows = (dy[:, None] + torch.arange(H, device=device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(W, device=device))[:, None, None, :]  # (B, 1, 1, W)
    flip = torch.rand(B, generator=generator, device=device) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(B, device=device)[:, None, None, None]
    channel = torch.arange(C, device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def shift(images: Tensor, dx: int, dy: int) -> Tensor:
    """Moves the pictures ``dx`` pixels right and ``dy`` pixels down (negative: left, up), filling with
    zeros (black) what enters: (B, C, H, W) -> same, same dtype."""
    B, C, H, W = images.shape
    if abs(dx) >= W or abs(dy) >= H:
        raise ValueError(f"a shift of ({dx}, {dy}) pixels leaves nothing of {H}x{W} images")
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top : top + H, left : left + W]


def shifted_views(images: Tensor, pixels: int) -> list[Tensor]:
    """The views of test-time augmentation by shifts: the pictures themselves, then moved ``pixels`` right,
    left, down and up (1 view when ``pixels`` is 0, else 5)."""
    if pixels == 0:
        return [images]
    return [images, *(shift(images, dx, dy) for dx, dy in ((pixels, 0), (-pixels, 0), (0, pixels), (0, -pixels)))]


@dataclass
class Augment:
    """The augmentation of a data set; ``kind`` "affine" (digits), "crop_flip" (photos) or "none"."""

    kind: str = "none"
    degrees: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    padding: int = 4

    @classmethod
    def scaled(cls, kind: str, strength: float) -> Augment:
        """``kind`` with its ranges times ``strength``: affine rotation, shift and zoom; crop padding."""
        if not strength >= 0:
            raise ValueError(f"augmentation strength must be >= 0; got {strength}")
        base = cls(kind)
        low, high = base.scale
        zoom = (1 - (1 - low) * strength, 1 + (high - 1) * strength)
        return cls(kind, base.degrees * strength, base.translate * strength, zoom, round(base.padding * strength))

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """float (B, C, H, W) in [0, 1] -> augmented, same shape."""
        if self.kind == "affine":
            return random_affine(
                images, degrees=self.degrees, translate=self.translate, scale=self.scale, generator=generator
            )
        if self.kind == "crop_flip":
            return crop_and_flip(images, padding=self.padding, generator=generator)
        if self.kind == "none":
            return images
        raise ValueError(f"augmentation must be 'affine', 'crop_flip' or 'none'; got {self.kind!r}")
