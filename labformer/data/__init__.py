"""Data: MNIST, CIFAR-10 and text corpora, held in memory as tensors and batched by indexing."""

from labformer.data.augment import Augment, crop_and_flip, random_affine
from labformer.data.cifar10 import load_cifar10
from labformer.data.folder import load_folder
from labformer.data.images import ImageData, ImageSplit
from labformer.data.mnist import load_mnist

__all__ = [
    "DATASETS", "Augment", "ImageData", "ImageSplit", "crop_and_flip", "load_cifar10", "load_folder", "load_images",
    "load_mnist", "load_run_images", "random_affine",
]  # fmt: skip


DATASETS = ("mnist", "cifar10", "folder")


def load_images(
    name: str,
    data_dir: str | None = None,
    *,
    val_size: float = 5000,
    seed: int = 0,
    image_size: int | None = None,
    strict: bool = False,
) -> ImageData:
    """The image data set ``name``: "mnist", "cifar10" or "folder" (any labelled folder or tar in
    ``data_dir``; ``image_size`` and ``strict`` apply to it, see :func:`load_folder`). ``val_size``: a
    count, or below 1 a fraction of the training images."""
    if name == "folder":
        if data_dir is None:
            raise ValueError("--dataset folder needs --data-dir: a folder or .tar/.tar.gz of <class>/<image> files")
        return load_folder(data_dir, val_size=val_size, seed=seed, image_size=image_size, strict=strict)
    loaders = {"mnist": load_mnist, "cifar10": load_cifar10}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    return loaders[name](data_dir, val_size=val_size, seed=seed)


def load_run_images(train: dict, data_dir: str | None = None) -> ImageData:
    """The data set a run was trained on, split as it was, from its ``config.json`` "train" settings."""
    return load_images(
        train["dataset"], data_dir or train.get("data_dir"), val_size=train["val_size"], seed=train["seed"],
        image_size=train.get("image_size"), strict=train.get("strict", False),
    )  # fmt: skip
