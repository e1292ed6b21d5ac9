"""Data: MNIST, CIFAR-10 and text corpora, held in memory as tensors and batched by indexing."""

from labformer.data.augment import Augment, crop_and_flip, random_affine
from labformer.data.cifar10 import load_cifar10
from labformer.data.images import ImageData, ImageSplit
from labformer.data.mnist import load_mnist

__all__ = ["Augment", "ImageData", "ImageSplit", "crop_and_flip", "load_cifar10", "load_mnist", "random_affine"]


def load_images(name: str, data_dir: str | None = None, *, val_size: int = 5000, seed: int = 0) -> ImageData:
    """The image data set ``name`` ("mnist" or "cifar10")."""
    loaders = {"mnist": load_mnist, "cifar10": load_cifar10}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(loaders)}")
    return loaders[name](data_dir, val_size=val_size, seed=seed)
