"""Training on any folder of labelled images (labformer.data.folder and ``--dataset folder``): layouts, tars,
sizes and colours, the decoding cache, bad folders, and a few hundred real CIFAR-10 JPEGs."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import missing
from PIL import Image

import labformer
from labformer.cli import main
from labformer.data import load_images
from labformer.data.folder import TEST_FRACTION, load_folder
from labformer.runs import load_run

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABFORMER_CACHE", str(tmp_path / "cache"))


def picture(value: int, size: int = 12, mode: str = "RGB") -> Image.Image:
    """A flat picture whose colour encodes ``value``, so that a test can tell which file became which image."""
    colour = (value, 255 - value, value // 2) if mode == "RGB" else value
    return Image.new(mode, (size, size), colour)


def write_folder(root: Path, classes: dict[str, int], *, split: bool = False, size: int = 12, fmt: str = "PNG") -> None:
    parts = ["train", "test"] if split else [""]
    for part in parts:
        for c, (name, count) in enumerate(classes.items()):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                picture(20 * c + i, size).save(folder / f"{i}.{fmt.lower()}", format=fmt)


def test_class_folders_are_split_stratified_and_seeded(tmp_path):
    write_folder(tmp_path / "pets", {"cat": 20, "dog": 30})
    data = load_folder(tmp_path / "pets", val_size=0.2, seed=3)
    assert data.classes == ["cat", "dog"] and data.channels == 3 and data.image_size == 12
    assert len(data.test) == round(TEST_FRACTION * 20) + round(TEST_FRACTION * 30) == 5
    assert torch.bincount(data.test.labels).tolist() == [2, 3]  # stratified
    assert torch.bincount(data.val.labels).tolist() == [4, 5]  # 20 % of each class's remaining images
    assert len(data.train) + len(data.val) + len(data.test) == 50
    again = load_folder(tmp_path / "pets", val_size=0.2, seed=3)
    assert torch.equal(again.test.images, data.test.images) and torch.equal(again.val.images, data.val.images)
    other = load_folder(tmp_path / "pets", val_size=0.2, seed=4)
    assert not torch.equal(other.test.images, data.test.images)
    # every image is some file's picture, labelled by its folder
    for images, labels in ((data.train.images, data.train.labels), (data.test.images, data.test.labels)):
        red = images[:, 0, 0, 0].long()
        assert torch.equal(labels, (red >= 20).long())


def test_train_size_draws_a_seeded_sample_across_the_classes(tmp_path):
    """A folder's images are stored class by class: --train-size must not keep only the first classes."""
    from labformer.training.classify import ClassifyConfig, load_data

    write_folder(tmp_path / "pets", {"cat": 20, "dog": 20, "owl": 20})
    settings = dict(dataset="folder", data_dir=str(tmp_path / "pets"), val_size=0, batch_size=4, train_size=12)
    whole = load_data(ClassifyConfig(**{**settings, "train_size": None}))
    data = load_data(ClassifyConfig(**settings))
    assert len(data.train) == 12 and len(torch.unique(data.train.labels)) == 3
    # each kept image is one of the whole training set's, with its label, kept in stored order
    red = whole.train.images[:, 0, 0, 0].tolist()
    positions = [red.index(value) for value in data.train.images[:, 0, 0, 0].tolist()]
    assert positions == sorted(positions) and len(set(positions)) == 12
    assert torch.equal(data.train.labels, whole.train.labels[positions])
    assert torch.equal(load_data(ClassifyConfig(**settings)).train.images, data.train.images)  # seeded
    other = load_data(ClassifyConfig(**settings, seed=1))
    assert not torch.equal(other.train.images, data.train.images)


def test_train_and_test_folders_in_a_tar_under_a_top_folder(tmp_path):
    write_folder(tmp_path / "set", {"a": 4, "b": 5}, split=True, fmt="JPEG")
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "set", arcname="my-data")
    data = load_folder(archive, val_size=2)
    assert (len(data.train), len(data.val), len(data.test)) == (7, 2, 9)
    assert data.classes == ["a", "b"] and torch.bincount(data.test.labels).tolist() == [4, 5]


def test_sizes_and_colours_are_unified_and_mean_std_come_from_training_images(tmp_path):
    root = tmp_path / "mixed"
    for name, mode in (("grey", "L"), ("colour", "RGB")):
        (root / name).mkdir(parents=True)
        for i, size in enumerate((10, 10, 10, 16, 24)):
            picture(50 * i, size, mode).save(root / name / f"{i}.png")
    data = load_folder(root, val_size=0)
    assert data.image_size == 10 and data.channels == 3  # the most common size; colour if any is
    assert load_folder(root, val_size=0, image_size=20).image_size == 20
    pixels = data.train.images.double() / 255
    np.testing.assert_allclose(data.mean, pixels.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(data.std, pixels.std(dim=(0, 2, 3), correction=0).numpy(), rtol=1e-5)
    (tmp_path / "grey" / "x").mkdir(parents=True)
    picture(9, 8, "L").save(tmp_path / "grey" / "x" / "0.png")
    picture(9, 8, "L").save(tmp_path / "grey" / "x" / "1.png")
    assert load_folder(tmp_path / "grey", val_size=0).channels == 1


def test_a_second_load_reads_the_cache_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    write_folder(tmp_path / "d", {"a": 3, "b": 3})
    first = load_folder(tmp_path / "d", val_size=0)
    cached = list((tmp_path / "cache" / "folders").glob("*.safetensors"))
    assert len(cached) == 1
    monkeypatch.setattr("labformer.data.folder._decode", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(load_folder(tmp_path / "d", val_size=0).train.images, first.train.images)
    monkeypatch.undo()
    monkeypatch.setenv("LABFORMER_CACHE", str(tmp_path / "cache"))
    picture(200).save(tmp_path / "d" / "a" / "0.png")
    changed = load_folder(tmp_path / "d", val_size=0)
    assert not torch.equal(changed.train.images, first.train.images)
    assert len(list((tmp_path / "cache" / "folders").glob("*.safetensors"))) == 2


def test_files_that_are_not_images_are_skipped_and_counted_or_refused(tmp_path, capsys):
    write_folder(tmp_path / "d", {"a": 3, "b": 3})
    (tmp_path / "d" / "a" / "notes.txt").write_text("not a picture")
    (tmp_path / "d" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    data = load_folder(tmp_path / "d", val_size=0)
    assert len(data.train) + len(data.test) == 6
    assert "skipped 2 files in" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"a/notes.txt in .* is not an image \(2 such files\); without --strict"):
        load_folder(tmp_path / "d", val_size=0, strict=True)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: (root / "loose.png").write_bytes(b""), "no class folders in"),
        (lambda root: write_folder(root, {"a": 2}) or (root / "empty").mkdir(), None),
        (lambda root: write_folder(root, {"a": 2}) or (root / "b").mkdir() or (root / "b" / "x.txt").write_text("x"),
         "class folder 'b' \\(all\\) in .* holds no images"),
    ],
)  # fmt: skip
def test_bad_folders_get_one_clear_error(tmp_path, make, message):
    root = tmp_path / "d"
    root.mkdir()
    make(root)
    if message is None:  # an empty folder is no class: the other classes still load
        assert load_folder(root, val_size=0).classes == ["a"]
        return
    with pytest.raises(ValueError, match=message):
        load_folder(root, val_size=0)


def test_classes_must_agree_between_train_and_test(tmp_path):
    write_folder(tmp_path / "d", {"a": 2, "b": 2}, split=True)
    (tmp_path / "d" / "test" / "b" / "0.png").rename(tmp_path / "d" / "test" / "c.png")
    for path in (tmp_path / "d" / "test" / "b").iterdir():
        path.unlink()
    (tmp_path / "d" / "test" / "b").rmdir()
    (tmp_path / "d" / "test" / "c").mkdir()
    (tmp_path / "d" / "test" / "c.png").rename(tmp_path / "d" / "test" / "c" / "0.png")
    with pytest.raises(
        ValueError, match=r"classes differ between train and test .* only in train \['b'\], only in test \['c'\]"
    ):
        load_folder(tmp_path / "d")


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "link"])
def test_a_tar_member_escaping_its_folder_is_refused_and_nothing_is_extracted(tmp_path, name):
    archive = tmp_path / "bad.tar"
    buffer = io.BytesIO()
    picture(1).save(buffer, format="PNG")
    with tarfile.open(archive, "w") as tar:
        for member_name in ("d/a/0.png", "d/b/0.png"):
            info = tarfile.TarInfo(member_name)
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
        info = tarfile.TarInfo(name if name != "link" else "d/a/link.png")
        if name == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
    before = sorted(p.name for p in tmp_path.parent.rglob("evil.png"))
    with pytest.raises(ValueError, match="which would land outside its folder"):
        load_folder(archive)
    assert sorted(p.name for p in tmp_path.parent.rglob("evil.png")) == before


def test_missing_and_unreadable_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder .*nowhere does not exist"):
        load_folder(tmp_path / "nowhere")
    (tmp_path / "x.zip").write_bytes(b"PK")
    with pytest.raises(ValueError, match="neither a folder nor a .tar/.tar.gz/.tgz archive"):
        load_folder(tmp_path / "x.zip")
    (tmp_path / "x.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read archive"):
        load_folder(tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match="--dataset folder needs --data-dir"):
        load_images("folder")


def test_train_predict_and_evaluate_a_folder_run_with_class_names(tmp_path, capsys):
    root = tmp_path / "shapes"
    for name, draw in (("circles", "ellipse"), ("squares", "rectangle")):
        (root / name).mkdir(parents=True)
        for i in range(40):
            image = Image.new("RGB", (16, 16), (255, 255, 255))
            from PIL import ImageDraw

            getattr(ImageDraw.Draw(image), draw)((3 + i % 3, 3, 12, 12 - i % 2), fill=(i * 5, 0, 100))
            image.save(root / name / f"{i}.png")
    out = tmp_path / "run"
    flags = ["--epochs", "6", "--batch-size", "16", "--dim", "32", "--depth", "1", "--device", "cpu", "--no-progress"]
    assert main(["train", "vit", "--dataset", "folder", "--data-dir", str(root), "--out", str(out), *flags]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["circles", "squares"] and config["model"]["image_size"] == 16
    assert config["model"]["patch_size"] == 8 and config["train"]["val_size"] == 0.1  # 16 = 2 x 8: near 7
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9  # circles and squares are told apart (chance: 0.5)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert main(["predict", str(out), str(root / "squares" / "3.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prediction"] == "squares" and len(result["top"]) == 2
    assert labformer.load(out).config.num_classes == 2


def test_an_image_size_no_patch_divides_is_refused_with_a_suggestion(tmp_path, capsys):
    write_folder(tmp_path / "d", {"a": 8, "b": 8}, size=37)
    flags = ["--batch-size", "4", "--device", "cpu"]
    assert main(["train", "vit", "--dataset", "folder", "--data-dir", str(tmp_path / "d"), *flags]) == 2
    assert "pass --image-size 35 or 42, or --patch-size" in capsys.readouterr().err


def test_real_cifar10_jpegs_train_for_a_few_steps(tmp_path):
    """A few hundred of the real CIFAR-10 JPEGs from the shared tar, read as a folder, train a few steps."""
    if not SHARED_CIFAR.exists():
        missing("the shared CIFAR-10 JPEG tar is not beside the checkout")
    subset = tmp_path / "cifar-subset.tar"
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(SHARED_CIFAR) as source, tarfile.open(subset, "w") as target:
        for member in source:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 4:
                continue
            key = (parts[-3], parts[-2])
            if counts.get(key, 0) < (30 if parts[-3] == "train" else 10):
                counts[key] = counts.get(key, 0) + 1
                target.addfile(member, source.extractfile(member))
            if len(counts) == 20 and all(v >= (30 if k[0] == "train" else 10) for k, v in counts.items()):
                break
    data = load_folder(subset, val_size=0.1)
    assert data.classes[:3] == ["airplane", "automobile", "bird"] and len(data.classes) == 10
    assert data.image_size == 32 and data.channels == 3 and len(data.test) == 100
    assert 0.3 < data.mean[0] < 0.65  # CIFAR-10's mean red is 0.49
    out = tmp_path / "run"
    flags = ["--epochs", "1", "--batch-size", "30", "--dim", "32", "--depth", "1", "--device", "cpu", "--no-progress"]
    assert main(["train", "vit", "--dataset", "folder", "--data-dir", str(subset), "--out", str(out), *flags]) == 0
    # The run's test accuracy, recomputed from its saved weights on the real test JPEGs.
    model, run = load_run(out)
    mean, std = torch.tensor(run["mean"]).view(1, -1, 1, 1), torch.tensor(run["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        predicted = model((data.test.images.float() / 255 - mean) / std).argmax(-1)
    accuracy = float((predicted == data.test.labels).float().mean())
    assert json.loads((out / "metrics.json").read_text())["test_accuracy_no_tta"] == pytest.approx(accuracy)
