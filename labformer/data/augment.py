"""Batch augmentation with torch ops only, on whatever device the batch lives (seeded)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from labformer.data.randaugment import RandAugment

__all__ = ["Augment", "crop_and_flip", "elastic", "random_affine", "random_stroke_width", "shift", "shifted_views"]


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def random_affine(
    images: Tensor, *, degrees: float, translate: float, scale: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Random rotation (±degrees), translation (± fraction of the size) and zoom, per image.

    images: float (B, C, H, W) -> same shape; uncovered pixels are filled with zeros (the background
    after MNIST normalisation is handled by the caller: augment before normalising).
    """
    return _resample(images, _affine_grid(images, degrees, translate, scale, generator))


def _affine_grid(
    images: Tensor, degrees: float, translate: float, scale: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Where each output pixel of :func:`random_affine` samples its picture: (B, H, W, 2) grid units."""
    B, device = images.shape[0], images.device
    angle = _uniform(B, -degrees, degrees, generator, device) * math.pi / 180
    zoom = _uniform(B, scale[0], scale[1], generator, device)
    shift = _uniform(2 * B, -translate, translate, generator, device).view(B, 2) * 2  # grid units: [-1, 1]
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    return F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)


def _resample(images: Tensor, grid: Tensor) -> Tensor:
    """Bilinear samples of ``images`` at ``grid`` ((B, H, W, 2), x then y, -1 and 1 the outer pixel edges),
    zero outside."""
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


def elastic(images: Tensor, *, pixels: float, generator: torch.Generator, spacing: int = 4) -> Tensor:
    """Elastic distortion (after Simard et al. 2003): every pixel moved by a smooth random field, per image.

    :func:`_elastic_field` draws the field; the picture is resampled there (bilinear, zeros outside):
    (B, C, H, W) -> same. Strokes bend a little, as different hands bend them.
    """
    B, _, H, W = images.shape
    identity = torch.eye(2, 3, device=images.device, dtype=images.dtype).expand(B, 2, 3)
    grid = F.affine_grid(identity, list(images.shape), align_corners=False)
    return _resample(images, grid + _elastic_field(images, pixels, generator, spacing))


def _elastic_field(images: Tensor, pixels: float, generator: torch.Generator, spacing: int = 4) -> Tensor:
    """Smooth random moves of each pixel of ``images`` (B, C, H, W), in grid units: (B, H, W, 2).

    Control points every ``spacing`` pixels (the corners included) each draw a move in [-1, 1]²
    (uniform), scaled so that each picture's largest is ``pixels``; the pixels between them interpolate
    bilinearly, so none moves further. (Simard et al. smooth a move per pixel with a Gaussian; control points
    give such a field with a sixteenth of the random numbers.)
    """
    B, _, H, W = images.shape
    device, dtype = images.device, images.dtype
    rows, cols = math.ceil((H - 1) / spacing) + 1, math.ceil((W - 1) / spacing) + 1
    moves = torch.rand(B, 2, rows, cols, generator=generator, device=device).to(dtype) * 2 - 1
    largest = moves.flatten(1).abs().amax(1).clamp_min(1e-12).view(B, 1, 1, 1)
    moves = moves * (pixels / largest)
    field = _linear_weights(H, rows, moves) @ moves @ _linear_weights(W, cols, moves).T  # (B, 2, H, W), x then y
    per_pixel = torch.tensor([2 / W, 2 / H], device=device, dtype=dtype)  # grid units per pixel
    return field.permute(0, 2, 3, 1) * per_pixel


def _linear_weights(n: int, points: int, like: Tensor) -> Tensor:
    """(n, points): linear interpolation from ``points`` evenly spaced values, the ends on the first and
    last of ``n`` pixels (a matrix product is much cheaper here than ``F.interpolate`` on a CPU)."""
    weights = torch.zeros(n, points, device=like.device, dtype=like.dtype)
    if points == 1:  # one value for every pixel
        return weights + 1
    position = torch.arange(n, device=like.device, dtype=like.dtype) * ((points - 1) / max(n - 1, 1))
    left = position.floor().clamp(max=points - 2).long()
    fraction = position - left
    weights[torch.arange(n), left] = 1 - fraction
    weights[torch.arange(n), left + 1] = fraction
    return weights


def random_stroke_width(images: Tensor, *, chance: float, generator: torch.Generator) -> Tensor:
    """Strokes a pixel thicker (the largest of each 3 x 3 neighbourhood) for ``chance / 2`` of the
    pictures and thinner (the smallest of each 2 x 2 block, 0 past the border) for another ``chance / 2``,
    the rest unchanged: (B, C, H, W) -> same.

    For light ink on a dark ground (MNIST): the largest neighbour widens the ink. Pens, fonts and scans
    draw thicker and thinner lines than MNIST's writers; a network that has seen them reads them better.
    """
    draw = torch.rand(images.shape[0], generator=generator, device=images.device)
    thick, thin = (draw < chance / 2).nonzero()[:, 0], ((draw >= chance / 2) & (draw < chance)).nonzero()[:, 0]
    out = images.clone()
    padded = F.pad(images[thick], (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])
    out[thick] = torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
    some = images[thin]
    blocks = torch.minimum(torch.minimum(some[..., :-1, :-1], some[..., 1:, :-1]), some[..., :-1, 1:])
    out[thin] = F.pad(torch.minimum(blocks, some[..., 1:, 1:]), (0, 1, 0, 1))
    return out


def shift(images: Tensor, dx: int, dy: int) -> Tensor:
    """Moves the pictures ``dx`` pixels right and ``dy`` pixels down (negative: left, up), filling with
    zeros (black) what enters: (B, C, H, W) -> same, same dtype."""
    B, C, H, W = images.shape
    if abs(dx) >= W or abs(dy) >= H:
        raise ValueError(f"a shift of ({dx}, {dy}) pixels leaves nothing of {H}x{W} images")
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top : top + H, left : left + W]


def shifted_views(images: Tensor, pixels: int, flip: bool = False) -> list[Tensor]:
    """The views of test-time augmentation: the pictures themselves, then moved ``pixels`` right, left, down
    and up (1 view when ``pixels`` is 0, else 5); with ``flip``, each of those also mirrored left-right, after
    them (twice the views). (B, C, H, W) each."""
    views = [images]
    if pixels:
        views += [shift(images, dx, dy) for dx, dy in ((pixels, 0), (-pixels, 0), (0, pixels), (0, -pixels))]
    return views + [view.flip(-1) for view in views] if flip else views


KINDS = ("affine", "crop_flip", "randaugment", "none")


@dataclass
class Augment:
    """The augmentation of a data set; ``kind`` "affine" (digits), "crop_flip" (photos), "randaugment"
    (photos: RandAugment on the uint8 pictures, then crop and flip, as the lab trains CIFAR-10) or "none"."""

    kind: str = "none"
    degrees: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    padding: int = 4
    stroke: float = 0.0  # the chance that a picture's strokes change width (:func:`random_stroke_width`)
    elastic: float = 0.0  # the largest move of an elastic distortion, in pixels (:func:`elastic`); 0 = none
    randaugment: RandAugment = RandAugment()  # used by kind "randaugment"

    @classmethod
    def scaled(
        cls,
        kind: str,
        strength: float,
        stroke: float = 0.0,
        elastic: float = 0.0,
        randaugment: RandAugment | None = None,
    ) -> Augment:
        """``kind`` with its ranges times ``strength``: affine rotation, shift and zoom; crop padding."""
        if not strength >= 0:
            raise ValueError(f"augmentation strength must be >= 0; got {strength}")
        if not 0 <= stroke <= 1:
            raise ValueError(f"the chance of a stroke-width change must be in [0, 1]; got {stroke}")
        if not elastic >= 0:
            raise ValueError(f"an elastic distortion's largest move must be >= 0 pixels; got {elastic}")
        base = cls(kind)
        low, high = base.scale
        zoom = (1 - (1 - low) * strength, 1 + (high - 1) * strength)
        padding = round(base.padding * strength)
        return cls(
            kind, base.degrees * strength, base.translate * strength, zoom, padding, stroke, elastic,
            randaugment or RandAugment(),
        )  # fmt: skip

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """uint8 (B, C, H, W) in [0, 255] or float in [0, 1] -> augmented float in [0, 1], same shape.

        RandAugment needs the uint8 pictures (it computes what Pillow computes on them). The affine
        transform and the elastic field make one grid, so a picture is resampled once.
        """
        if self.kind not in KINDS:
            raise ValueError(f"augmentation must be one of {list(KINDS)}; got {self.kind!r}")
        if self.kind == "randaugment":
            if images.dtype != torch.uint8:
                raise ValueError(f"RandAugment works on uint8 pictures; got {images.dtype}")
            images = self.randaugment(images, generator)
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        if self.kind in ("crop_flip", "randaugment"):
            images = crop_and_flip(images, padding=self.padding, generator=generator)
        if self.kind == "affine":
            grid = _affine_grid(images, self.degrees, self.translate, self.scale, generator)
            if self.elastic:
                grid = grid + _elastic_field(images, self.elastic, generator)
            images = _resample(images, grid)
        elif self.elastic:
            images = elastic(images, pixels=self.elastic, generator=generator)
        return random_stroke_width(images, chance=self.stroke, generator=generator) if self.stroke else images
