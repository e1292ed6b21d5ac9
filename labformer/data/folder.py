"""Any folder of labelled images: ``<class>/<image>`` (split here, seeded and stratified) or
``train/<class>/<image>`` and ``test/<class>/<image>``, as a directory or a ``.tar`` / ``.tar.gz``.

Images of any size and format PIL reads (PNG, JPEG, ...), greyscale or colour, are decoded once, resized to
one size (default: the most common) and cached as uint8 tensors (safetensors) under the cache directory,
keyed by the files' content, the size and the colour mode: a second run starts in seconds. A tar archive is
read in place, never extracted; a member that would land outside its folder (an absolute path, ``..``, a
link) makes the archive refused. Files that are not images are skipped and counted, or refused (strict).
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from labformer.data.download import cache_dir
from labformer.data.images import ImageData, ImageSplit
from labformer.io import read_metadata, read_tensors, write_tensors

__all__ = ["load_folder"]

ARCHIVES = (".tar", ".tar.gz", ".tgz")
TEST_FRACTION = 0.1  # of each class, when the folder has no test split of its own
Reader = Callable[[], bytes]


def _entries(source: Path) -> Iterator[tuple[PurePosixPath, Reader]]:
    """(path relative to the folder, a function reading its bytes) for every file, sorted by path."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield PurePosixPath(path.relative_to(source).as_posix()), path.read_bytes
        return
    try:
        with tarfile.open(source) as archive:
            members = archive.getmembers()
            contents = {m.name: archive.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ValueError(f"cannot read archive {source}: {error}") from None
    for member in members:
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or member.issym() or member.islnk():
            raise ValueError(
                f"archive {source} holds {member.name!r}, which would land outside its folder "
                f"({'a link' if member.issym() or member.islnk() else 'an absolute or .. path'}); refusing it"
            )
    for name in sorted(contents):
        yield PurePosixPath(name), (lambda data=contents[name]: data)


def _layout(paths: list[PurePosixPath], source: Path) -> dict[str, dict[str, list[int]]]:
    """{"train"/"test"/"all": {class: [index into paths, ...]}} from the folder structure."""
    parts = [p.parts for p in paths if not p.name.startswith(".")]
    keep = [i for i, p in enumerate(paths) if not p.name.startswith(".")]
    depth = 0  # strip folders every file shares (e.g. the archive's own top folder)
    while parts and all(len(p) > depth + 2 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    tops = {p[depth].lower() for p in parts if len(p) > depth + 1}
    split = {"train", "test"} <= tops
    layout: dict[str, dict[str, list[int]]] = {}
    for i, p in zip(keep, parts):
        rest = p[depth:]
        if split and len(rest) >= 3 and rest[0].lower() in ("train", "test"):
            layout.setdefault(rest[0].lower(), {}).setdefault(rest[1], []).append(i)
        elif not split and len(rest) >= 2:
            layout.setdefault("all", {}).setdefault(rest[0], []).append(i)
    if not layout:
        raise ValueError(
            f"no class folders in {source}: expected <class>/<image> files, or train/<class>/<image> and "
            "test/<class>/<image>"
        )
    if split:
        train, test = set(layout.get("train", {})), set(layout.get("test", {}))
        if train != test:
            raise ValueError(
                f"the classes differ between train and test in {source}: only in train {sorted(train - test)}, "
                f"only in test {sorted(test - train)}"
            )
    return layout


def _header(data: bytes) -> tuple[tuple[int, int], bool] | None:
    """(size, is greyscale) of an image, read from its header only; None if it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size, image.mode in ("1", "L", "LA", "I", "I;16", "F")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _decode(data: bytes, size: int, grey: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        picture = image.convert("L" if grey else "RGB")
    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    array = np.asarray(picture, dtype=np.uint8)
    return array[None] if grey else array.transpose(2, 0, 1)


def _decoded(source: Path, image_size: int | None, strict: bool) -> tuple[dict[str, torch.Tensor], list[str], int]:
    """Every image as uint8 (N, C, S, S) per part ("train"/"test" or "all") with labels, the classes and
    how many files were skipped; from the cache when the same content was decoded before."""
    entries = list(_entries(source))
    paths, readers = [p for p, _ in entries], [r for _, r in entries]
    layout = _layout(paths, source)
    classes = sorted({name for part in layout.values() for name in part})
    for part, by_class in layout.items():
        for name in classes:
            if not by_class.get(name):
                raise ValueError(f"class folder {name!r} ({part}) in {source} holds no files")
    digest = hashlib.sha256(f"{image_size}:{strict}".encode())
    for part in sorted(layout):
        for name in classes:
            for i in layout[part][name]:
                data = readers[i]()
                digest.update(f"{part}/{name}/{paths[i]}:{len(data)}:".encode())
                digest.update(hashlib.sha256(data).digest())
    cached = cache_dir() / "folders" / f"{digest.hexdigest()[:40]}.safetensors"
    if cached.exists():  # the same files, size and strictness were decoded before
        tensors = read_tensors(cached, "decoded image cache")
        return tensors, classes, int(read_metadata(cached, "decoded image cache").get("skipped", 0))
    headers = {i: _header(readers[i]()) for part in layout.values() for members in part.values() for i in members}
    bad = sorted(str(paths[i]) for i, h in headers.items() if h is None)
    if bad and strict:
        raise ValueError(
            f"{bad[0]} in {source} is not an image ({len(bad)} such files); without --strict they are skipped"
        )
    if bad:
        print(f"skipped {len(bad)} files in {source} that are not images, e.g. {bad[0]}", file=sys.stderr)
    good = {i: h for i, h in headers.items() if h is not None}
    for part, by_class in layout.items():
        for name in classes:
            if not any(i in good for i in by_class[name]):
                raise ValueError(f"class folder {name!r} ({part}) in {source} holds no images")
    sizes = Counter(max(size) for size, _ in good.values())
    size = image_size or sizes.most_common(1)[0][0]
    grey = all(is_grey for _, is_grey in good.values())
    tensors: dict[str, torch.Tensor] = {}
    with tqdm(total=len(good), desc=f"decoding {source.name}", unit="img", file=sys.stderr) as bar:
        for part in sorted(layout):
            images, labels = [], []
            for label, name in enumerate(classes):
                for i in layout[part][name]:
                    if i in good:
                        images.append(_decode(readers[i](), size, grey))
                        labels.append(label)
                        bar.update()
            tensors[f"{part}.images"] = torch.from_numpy(np.stack(images))
            tensors[f"{part}.labels"] = torch.tensor(labels, dtype=torch.int64)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_tensors(cached, tensors, {"source": str(source), "skipped": str(len(bad))})
    return tensors, classes, len(bad)


def _stratified(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, taken): ``fraction`` of each class taken (at least one where a class has two or more)."""
    generator = torch.Generator().manual_seed(seed)
    kept, taken = [], []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        taken.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(taken).sort().values


def load_folder(
    source: str | Path, *, val_size: float = 0.1, seed: int = 0, image_size: int | None = None, strict: bool = False
) -> ImageData:
    """A folder (or tar) of labelled images as :class:`ImageData`: uint8 images (N, C, S, S), C = 1 if every
    image is greyscale, else 3; classes from the folder names, sorted.

    Args:
        source: a directory or a ``.tar`` / ``.tar.gz`` holding ``<class>/<image>`` or
            ``train/<class>/<image>`` and ``test/<class>/<image>`` (under one top folder or not).
        val_size: validation images taken from the training images, per class: a fraction (< 1) or a
            count. Without a test folder, ``TEST_FRACTION`` of each class is first set aside as the test
            split (seeded by ``seed``).
        image_size: side S the images are resized to (default: the most common longer side).
        strict: refuse files that are not images, instead of skipping them.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"image folder {source} does not exist")
    if source.is_file() and not source.name.endswith(ARCHIVES):
        raise ValueError(f"{source} is neither a folder nor a {'/'.join(ARCHIVES)} archive")
    if image_size is not None and image_size <= 0:
        raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
    tensors, classes, _ = _decoded(source, image_size, strict)
    if "all.images" in tensors:
        everything = ImageSplit(tensors["all.images"], tensors["all.labels"])
        kept, taken = _stratified(everything.labels, TEST_FRACTION, seed)
        train, test = everything.subset(kept), everything.subset(taken)
    else:
        train = ImageSplit(tensors["train.images"], tensors["train.labels"])
        test = ImageSplit(tensors["test.images"], tensors["test.labels"])
    fraction = val_size if val_size < 1 else val_size / len(train)
    if not 0 <= fraction < 1:
        raise ValueError(f"val_size ({val_size}) must be below the {len(train)} training images")
    kept, taken = _stratified(train.labels, fraction, seed + 1) if fraction > 0 else (torch.arange(len(train)), None)
    val = train.subset(taken) if taken is not None else train.subset(slice(0, 0))
    train = train.subset(kept)
    sums = torch.zeros(2, train.images.shape[1], dtype=torch.float64)
    for start in range(0, len(train), 4096):  # per channel, in chunks: no float copy of the whole set
        chunk = train.images[start : start + 4096].double() / 255
        sums += torch.stack([chunk.sum(dim=(0, 2, 3)), (chunk**2).sum(dim=(0, 2, 3))])
    count = len(train) * train.images.shape[2] * train.images.shape[3]
    mean_t = sums[0] / count
    std_t = (sums[1] / count - mean_t**2).clamp(min=1e-6).sqrt()
    mean, std = tuple(mean_t.tolist()), tuple(std_t.tolist())
    return ImageData(f"folder:{source.name}", train, val, test, classes, mean, std)
