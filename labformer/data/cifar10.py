"""CIFAR-10 from its standard archives (binary or python version), as a directory or the .tar.gz.

The python version is a pickle; it is read with an unpickler that admits only NumPy's array
reconstruction, so a hostile file cannot run code (anything else is refused).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from labformer.data.download import cache_dir, download
from labformer.data.images import ImageData, ImageSplit, split_validation

__all__ = ["CLASSES", "load_cifar10"]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
RECORD = 1 + 3 * 32 * 32


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only arrays")


def _parse_binary(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) == 0 or len(data) % RECORD:
        raise ValueError(
            f"CIFAR-10 binary batch {name} is truncated or corrupt ({len(data)} bytes, not a multiple of {RECORD})"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _parse_python(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
        raise ValueError(f"CIFAR-10 python batch {name} is not a valid batch: {error}") from None
    return images, labels


def _read_members(source: Path) -> dict[str, bytes]:
    """Batch name -> raw bytes, from a directory or a .tar.gz archive (either version)."""
    found: dict[str, bytes] = {}
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            stem = path.name.removesuffix(".bin")
            if path.is_file() and stem in (*TRAIN, "test_batch"):
                found[f"{path.parent.name}/{path.name}"] = path.read_bytes()
    else:
        try:
            with tarfile.open(source) as archive:
                for member in archive.getmembers():
                    stem = Path(member.name).name.removesuffix(".bin")
                    if member.isfile() and stem in (*TRAIN, "test_batch"):
                        found[member.name] = archive.extractfile(member).read()  # type: ignore[union-attr]
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ValueError(f"cannot read CIFAR-10 archive {source}: {error}") from None
    return found


def _load_splits(source: Path) -> tuple[ImageSplit, ImageSplit]:
    members = _read_members(source)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, data in members.items():
        stem = Path(name).name
        parse = _parse_binary if stem.endswith(".bin") else _parse_python
        parts[stem.removesuffix(".bin")] = parse(data, name)
    missing = [stem for stem in (*TRAIN, "test_batch") if stem not in parts]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batches {', '.join(missing)} not found in {source} (expected the "
            "cifar-10-batches-bin or cifar-10-batches-py files)"
        )
    splits = []
    for stems in (TRAIN, ["test_batch"]):
        images = np.concatenate([parts[s][0] for s in stems])
        labels = np.concatenate([parts[s][1] for s in stems])
        if labels.min() < 0 or labels.max() > 9:
            raise ValueError(f"CIFAR-10 labels in {source} outside 0..9")
        splits.append(ImageSplit(torch.from_numpy(images.copy()), torch.from_numpy(labels)))
    return splits[0], splits[1]


def load_cifar10(data_dir: str | Path | None = None, *, val_size: float = 5000, seed: int = 0) -> ImageData:
    """CIFAR-10 as :class:`ImageData` (uint8 images (N, 3, 32, 32)).

    Args:
        data_dir: a directory holding the extracted batches or the .tar.gz archive, or the archive
            itself. None: the download cache (fetched from the official URL when online).
        val_size: validation images carved (seeded) from the 50,000 training images.
        seed: the validation split's seed.
    """
    if data_dir is None:
        hint = "download cifar-10-binary.tar.gz elsewhere and pass --data-dir DIR"
        source = download(URL, cache_dir() / "cifar-10-binary.tar.gz", what="CIFAR-10", hint=hint)
    else:
        source = Path(data_dir)
        if not source.exists():
            raise FileNotFoundError(f"CIFAR-10 data {source} does not exist")
        archives = sorted(source.glob("cifar-10-*.tar.gz")) if source.is_dir() else []
        if archives and not any(source.rglob("data_batch_1*")):
            source = archives[0]
    train, test = _load_splits(source)
    train, val = split_validation(train, min(val_size, len(train) - 1) if val_size >= 1 else val_size, seed)
    return ImageData("cifar10", train, val, test, CLASSES, CIFAR_MEAN, CIFAR_STD)
