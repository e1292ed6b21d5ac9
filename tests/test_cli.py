"""The `labformer` command end to end on small data: train, evaluate, predict, resume, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_VIT_ARGS, CtrlC, run_cli
from PIL import Image

import labformer
from labformer.cli import main
from labformer.data import load_run_images
from labformer.data.augment import shift
from labformer.runs import read_run_config
from labformer.training import classify

TINY_VIT = [*TINY_VIT_ARGS, "--batch-size", "50"]


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    from conftest import write_mnist_dir

    base = tmp_path_factory.mktemp("vit")
    data_dir = write_mnist_dir(base / "mnist")
    out = base / "run"
    result = run_cli(
        "train",
        "--data-dir",
        str(data_dir),
        "--epochs",
        "3",
        "--out",
        str(out),
        "--lr",
        "1e-2",
        "--augment",
        "none",
        "--warmup-epochs",
        "0.2",
        "--tta-shift",
        "1",
        *TINY_VIT,
    )
    return out, data_dir, result


def test_train_writes_the_whole_run_directory(vit_run):
    out, _, result = vit_run
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("Epoch")]
    pattern = (
        r"Epoch \d/3  \d+\.\ds  loss \d\.\d{3}  acc \d+\.\d%  val_loss \d\.\d{3}  val_acc \d+\.\d%  lr \d\.\de-\d\d"
    )
    assert len(lines) == 3 and all(re.fullmatch(pattern, line) for line in lines), lines
    for name in (
        "config.json",
        "model.safetensors",
        "history.json",
        "history.csv",
        "metrics.json",
        "checkpoint.safetensors",
    ):
        assert (out / name).stat().st_size > 0, name
    for figure in ("curves.png", "confusion.png", "mistakes.png", "attention.png"):
        with Image.open(out / figure) as image:
            assert image.size[0] > 200 and image.size[1] > 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "test_loss", "epochs", "train_seconds", "images_per_second"} <= set(metrics)
    assert {"test_accuracy_no_tta", "test_loss_no_tta"} <= set(metrics)  # the run asked for test-time shifts
    shifts = f"with 1-pixel shifts ({100 * metrics['test_accuracy_no_tta']:.2f}% without)"
    assert f"test_acc {100 * metrics['test_accuracy']:.2f}% {shifts}" in result.stdout
    assert 0.5 < metrics["test_accuracy"] <= 1.0  # the synthetic digits are easy
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,loss,accuracy,val_loss")


def test_load_and_evaluate_agree_with_metrics(vit_run):
    out, data_dir, _ = vit_run
    model = labformer.load(out)
    assert not model.training and model.config.dim == 16
    result = run_cli("evaluate", str(out), "--data-dir", str(data_dir), "--json")
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert scored["tta_shift"] == 1  # evaluate scores as the run did
    assert scored["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert scored["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
    assert np.array(scored["confusion"]).sum() == 200
    text = run_cli("evaluate", str(out), "--data-dir", str(data_dir))
    assert "test accuracy" in text.stdout and "confusion matrix" in text.stdout


def test_test_time_shifts_average_the_probabilities_of_five_views(vit_run, capsys):
    out, data_dir, _ = vit_run
    model = labformer.load(out)
    data = load_run_images(read_run_config(out)["train"], str(data_dir))
    result = classify.evaluate(model, data, "test", tta_shift=1, batch_size=64)
    # Brute force: the test pictures moved pixel by pixel, one view at a time, probabilities averaged.
    images, labels = data.test.images, data.test.labels
    probs = []
    for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = torch.zeros_like(images)
        for y in range(28):
            for x in range(28):
                if 0 <= y - dy < 28 and 0 <= x - dx < 28:
                    moved[:, :, y, x] = images[:, :, y - dy, x - dx]
        with torch.no_grad():
            probs.append(model(data.normalize(moved)).softmax(-1))
    expected = torch.stack(probs).mean(0)
    torch.testing.assert_close(result.probabilities, expected, rtol=1e-4, atol=1e-5)
    loss = -expected[torch.arange(len(labels)), labels].log().mean()
    assert result.loss == pytest.approx(float(loss), rel=1e-4)
    assert result.accuracy == pytest.approx(float((expected.argmax(-1) == labels).double().mean()))
    plain = classify.evaluate(model, data, "test")
    assert plain.accuracy == pytest.approx(float((probs[0].argmax(-1) == labels).double().mean()))
    with pytest.raises(ValueError, match="tta_shift must be >= 0"):
        classify.ClassifyConfig(tta_shift=-1)


def test_test_time_mirroring_averages_each_view_and_its_mirror(vit_run):
    out, data_dir, _ = vit_run
    model = labformer.load(out)
    data = load_run_images(read_run_config(out)["train"], str(data_dir))
    result = classify.evaluate(model, data, "test", tta_shift=1, tta_flip=True, batch_size=64)
    # Brute force: each view's columns read right to left, index by index.
    images = data.test.images
    columns = torch.arange(27, -1, -1)
    probs = []
    for view in (images, *(shift(images, dx, dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)))):
        for picture in (view, view[..., columns]):
            with torch.no_grad():
                probs.append(model(data.normalize(picture)).softmax(-1))
    torch.testing.assert_close(result.probabilities, torch.stack(probs).mean(0), rtol=1e-4, atol=1e-5)
    alone = classify.evaluate(model, data, "test", tta_flip=True, batch_size=64)
    torch.testing.assert_close(alone.probabilities, torch.stack(probs[:2]).mean(0), rtol=1e-4, atol=1e-5)


def test_a_test_time_shift_as_large_as_the_images_is_refused_before_training(tmp_path, capsys):
    from conftest import write_mnist_dir

    data_dir = write_mnist_dir(tmp_path / "mnist")
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(data_dir), "--tta-shift", "28", "--out", str(out), *TINY_VIT]) == 2
    assert "--tta-shift must be smaller than the images' 28 pixels; got 28" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_predict_images_of_any_size_and_colour(vit_run, tmp_path):
    from conftest import synthetic_digits

    out, _, _ = vit_run
    digits = synthetic_digits(20, 5)
    model = labformer.load(out)
    paths = []
    for i, kind in enumerate(["plain", "inverted-rgb-large"]):
        picture = digits.images[3, 0].numpy()
        if kind == "plain":
            image = Image.fromarray(picture)
        else:  # dark on light, colour, 4x larger: must be inverted and resized back
            image = Image.fromarray(255 - picture).resize((112, 112), Image.Resampling.NEAREST).convert("RGB")
        path = tmp_path / f"digit{i}.{'png' if i == 0 else 'jpg'}"
        image.save(path)
        paths.append(str(path))
    result = run_cli("predict", str(out), *paths)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for path, line in zip(paths, lines):
        assert re.fullmatch(rf"{re.escape(path)}: \d \(\d \d\.\d\d, \d \d\.\d\d, \d \d\.\d\d\)", line), line
    as_json = [json.loads(line) for line in run_cli("predict", str(out), *paths, "--json").stdout.splitlines()]
    assert [r["path"] for r in as_json] == paths
    assert as_json[1]["prediction"] == as_json[0]["prediction"]  # the inverted, enlarged colour copy reads alike
    # the probabilities shown are the model's own, recomputed from the picture as predict prepares it
    from labformer.predict import load_image
    from labformer.runs import load_run

    _, run = load_run(out)
    pixels = load_image(Path(paths[0]), channels=1, size=28, mnist_style=True)
    with torch.no_grad():
        probabilities = model((pixels[None].float() / 255 - run["mean"][0]) / run["std"][0]).softmax(-1)[0]
    values, indices = probabilities.topk(3)
    assert [label for label, _ in as_json[0]["top"]] == [str(int(i)) for i in indices]
    assert [p for _, p in as_json[0]["top"]] == pytest.approx(values.tolist(), abs=1e-4)
    # the plain file is scored exactly like the in-memory image
    loaded = load_image(Path(paths[0]), channels=1, size=28, mnist_style=False)
    assert torch.equal(loaded, digits.images[3])
    del model


def test_predict_with_test_time_shifts_averages_five_views(vit_run, tmp_path, capsys):
    from conftest import synthetic_digits

    from labformer.predict import load_image, predict_images

    out, _, _ = vit_run
    model, run = labformer.load(out), read_run_config(out)
    digits = synthetic_digits(20, 5)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(digits.images[i, 0].numpy()).save(paths[-1])
    results = predict_images(model, run, paths, tta_shift=1)
    mean = torch.tensor(run["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(run["std"]).view(1, -1, 1, 1)
    for path, result in zip(paths, results):
        image = load_image(path, channels=1, size=28, mnist_style=True).float()
        probs = []
        for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):  # brute force: move pixel by pixel
            moved = torch.zeros_like(image)
            for y in range(28):
                for x in range(28):
                    if 0 <= y - dy < 28 and 0 <= x - dx < 28:
                        moved[:, y, x] = image[:, y - dy, x - dx]
            with torch.no_grad():
                probs.append(model((moved[None] / 255 - mean) / std).softmax(-1)[0])
        expected = torch.stack(probs).mean(0)
        assert result["prediction"] == run["classes"][int(expected.argmax())]
        assert result["top"][0][1] == pytest.approx(float(expected.max()), abs=1e-4)
    assert main(["predict", str(out), str(paths[0]), "--tta-shift", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"] == [list(pair) for pair in results[0]["top"]]
    assert main(["predict", str(out), str(paths[0]), "--tta-shift", "-1"]) == 2
    assert "--tta-shift must be >= 0; got -1" in capsys.readouterr().err
    assert main(["predict", str(out), str(paths[0]), "--tta-shift", "28"]) == 2
    assert "leaves nothing of 28x28 images" in capsys.readouterr().err


def test_resume_continues_an_interrupted_run_exactly(tmp_path, mnist_dir):
    model_config, train_config = classify.preset_configs(
        "fast",
        "mnist",
        dict(dim=16, depth=1, num_heads=2, mlp_dim=32),
        dict(epochs=3, batch_size=50, val_size=100, data_dir=str(mnist_dir), device="cpu", augment="affine"),
    )
    full = classify.train_classifier(model_config, train_config, out=tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):  # during the second epoch's evaluation
        cut = [CtrlC(evaluation=2)]
        classify.train_classifier(model_config, train_config, out=tmp_path / "cut", progress=False, callbacks=cut)
    resumed = classify.train_classifier(
        None, classify.ClassifyConfig(device="cpu"), resume=tmp_path / "cut", progress=False
    )
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], abs=1e-6)
    a = labformer.load(tmp_path / "full").state_dict()
    b = labformer.load(tmp_path / "cut").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
        (["train", "--device", "mps"], r"--device mps \(Apple GPUs\) is not supported"),
        (["train", "--patch-size", "5"], r"--patch-size \(5\) must divide --image-size \(28\)"),
        (["train", "--dim", "30", "--heads", "4"], r"--num-heads \(4\) must divide --dim \(30\)"),
        (["train", "--lr", "0"], "lr must be positive; got 0.0"),
        (["train", "--epochs", "0"], "epochs must be a positive integer; got 0"),
        (["train", "--data-dir", "/nonexistent/mnist"], "MNIST directory /nonexistent/mnist does not exist"),
        (["evaluate", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("labformer: error:")
    assert re.search(message, err), err


def test_bad_files(vit_run, tmp_path, capsys, mnist_dir):
    out, _, _ = vit_run
    # batch larger than the data set
    assert (
        main(
            [
                "train",
                "--data-dir",
                str(mnist_dir),
                "--val-size",
                "100",
                "--batch-size",
                "100000",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "--batch-size (100000) is larger than the training set" in capsys.readouterr().err
    # corrupt data file
    (mnist_dir / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    assert main(["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r2")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    # unreadable image
    bogus = tmp_path / "not-an-image.png"
    bogus.write_text("hello")
    assert main(["predict", str(out), str(bogus)]) == 2
    assert f"cannot read image {bogus}" in capsys.readouterr().err
    # a run directory without a model
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.json").write_text((out / "config.json").read_text())
    assert main(["evaluate", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "model weights" in err and "not found" in err


class Payload:
    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_checkpoint_is_refused_without_running_code(vit_run, tmp_path):
    out, _, _ = vit_run
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "config.json").write_text((out / "config.json").read_text())
    payload = Payload()
    payload.target = str(tmp_path / "pwned")
    torch.save({"weights": payload}, hostile / "model.safetensors")
    with pytest.raises(ValueError, match="pickle or torch.save file"):
        labformer.load(hostile)
    import pickle

    (hostile / "model.safetensors").write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match="pickle or torch.save file"):
        labformer.load(hostile)
    assert not (tmp_path / "pwned").exists()
    # a truncated safetensors file
    (hostile / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        labformer.load(hostile)


def test_checkpoint_of_another_shape_is_refused(vit_run, tmp_path):
    out, _, _ = vit_run
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((out / "config.json").read_text())
    config["model"]["dim"] = 32
    config["model"]["num_heads"] = 4
    (other / "config.json").write_text(json.dumps(config))
    (other / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"does not fit the vit model.*wrong shapes"):
        labformer.load(other)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "svhn"], r"labformer train vit: error: argument --dataset: invalid choice: 'svhn'"),
        (["train", "--preset", "huge"], r"labformer train vit: error: argument --preset: invalid choice: 'huge'"),
        (["train", "gpt", "--preset", "gpu"], r"labformer train gpt: error: argument --preset: invalid choice: 'gpu'"),
        (["train", "gpt", "--iters", "many"], r"labformer train gpt: error: argument --iters: invalid int value"),
        (["train", "--no-such-flag"], r"labformer: error: unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(message, err[0]), err


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`labformer lab list | head -0`: the pipe is closed before anything is written; no traceback, no error."""
    process = subprocess.Popen(
        [sys.executable, "-m", "labformer", "lab", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the reader leaves at once: every write the command makes meets a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert stderr == ""
