"""Image datasets held as one uint8 tensor each, batched by tensor indexing (no per-sample Python)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ImageData", "ImageSplit", "split_validation"]


@dataclass
class ImageSplit:
    """``images`` (N, C, H, W) uint8 and ``labels`` (N,) int64."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W); got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: Tensor | slice) -> ImageSplit:
        return ImageSplit(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> ImageSplit:
        return ImageSplit(self.images.to(device), self.labels.to(device))

    def batches(
        self, batch_size: int, *, order: Tensor | None = None, drop_last: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yields (uint8 images, labels) in ``order`` (default: as stored)."""
        n = len(self)
        order = torch.arange(n, device=self.images.device) if order is None else order
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield self.images[index], self.labels[index]


@dataclass
class ImageData:
    """A classification data set: train / validation / test splits and how to normalise them."""

    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> float (B, C, H, W), standardised with the data set's mean and std."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std


def split_validation(train: ImageSplit, size: float, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """Carves a seeded random validation split of ``size`` images (below 1: that fraction) out of ``train``."""
    size = round(size * len(train)) if 0 < size < 1 else int(size)
    if not 0 <= size < len(train):
        raise ValueError(f"val_size ({size}) must be at least 0 and smaller than the {len(train)} training images")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.subset(order[size:].sort().values), train.subset(order[:size].sort().values)
