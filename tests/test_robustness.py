"""Distributed training (2 gloo processes), SIGKILL + resume, NaN losses and write errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_GPT_ARGS, TINY_VIT_ARGS, run_cli

import labformer
from labformer import io
from labformer.training import classify, language

TINY_VIT = [*TINY_VIT_ARGS, "--augment", "affine"]
TINY_GPT = [*TINY_GPT_ARGS, "--eval-iters", "2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "labformer",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def weights(run: Path) -> dict[str, torch.Tensor]:
    tensors = io.read_tensors(run / "checkpoint.safetensors", "checkpoint")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        x, y = wa[name], wb[name]
        if name.endswith("in_proj_bias"):
            # The key bias has a gradient of exactly zero in exact arithmetic (softmax ignores a constant
            # per row); Adam rescales its float noise to lr-sized steps, so only q and v biases compare.
            third = x.shape[0] // 3
            x, y = torch.cat([x[:third], x[2 * third :]]), torch.cat([y[:third], y[2 * third :]])
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=name)


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, mnist_dir):
    args = ["train", "vit", "--data-dir", str(mnist_dir), "--epochs", "1", "--batch-size", "50", *TINY_VIT]
    single = run_cli(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    double = torchrun(2, *args, "--out", str(tmp_path / "two"))
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("Epoch 1/1") == 1  # only rank 0 prints
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    one, two = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("one", "two"))
    assert two["processes"] == 2 and one["processes"] == 1
    history_one, history_two = (json.loads((tmp_path / r / "history.json").read_text()) for r in ("one", "two"))
    assert history_one[0]["loss"] == pytest.approx(history_two[0]["loss"], rel=1e-4)  # all-reduced metrics
    assert history_one[0]["accuracy"] == history_two[0]["accuracy"]


def test_two_processes_gpt(tmp_path, corpus_file):
    args = [
        "train",
        "gpt",
        "--text",
        str(corpus_file),
        "--iters",
        "6",
        "--eval-interval",
        "3",
        "--batch-size",
        "8",
        # AdamW: Muon orthogonalises each gradient, which lifts the float noise of a different reduction
        # order (two processes) in near-zero singular directions to full-size steps (1e-4 apart after 6).
        "--optimizer",
        "adamw",
        *TINY_GPT,
    ]
    single = run_cli(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    double = torchrun(2, *args, "--out", str(tmp_path / "two"))
    assert double.returncode == 0, double.stderr[-3000:]
    assert_same_weights(tmp_path / "one", tmp_path / "two")


def test_two_processes_seq2seq(tmp_path):
    """Two processes, each half of every batch, train the weights one process trains (pairs of different
    lengths: each pair weighs the same in the loss, whichever process holds it)."""
    args = ["train", "seq2seq", "--task", "reverse", "--iters", "6", "--eval-interval", "3", "--batch-size", "8",
            "--dropout", "0", "--dim", "16", "--num-heads", "2", "--mlp-dim", "32", "--train-size", "200",
            "--val-size", "20", "--test-size", "20", "--eval-size", "10", "--device", "cpu",
            "--no-progress"]  # fmt: skip
    single = run_cli(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    double = torchrun(2, *args, "--out", str(tmp_path / "two"))
    assert double.returncode == 0, double.stderr[-3000:]
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["processes"] == 2 and two["test_count"] == 20


def test_odd_global_batch_is_refused_clearly(tmp_path, mnist_dir):
    result = torchrun(
        2, "train", "vit", "--data-dir", str(mnist_dir), "--batch-size", "49", "--out", str(tmp_path / "r"), *TINY_VIT
    )
    assert result.returncode != 0
    assert "--batch-size (49) must be divisible by the number of processes (2)" in result.stderr


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    from conftest import SHARED_SHAKESPEARE

    path = tmp_path / "corpus.txt"
    path.write_text(SHARED_SHAKESPEARE.read_text()[:20000] if SHARED_SHAKESPEARE.exists() else "to be or not\n" * 2000)
    return path


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, mnist_dir):
    args = [
        sys.executable,
        "-m",
        "labformer",
        "train",
        "vit",
        "--data-dir",
        str(mnist_dir),
        "--epochs",
        "30",
        "--batch-size",
        "25",
        "--checkpoint-every",
        "3",
        *TINY_VIT,
    ]
    full = subprocess.run([*args, "--out", str(tmp_path / "full")], capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    process = subprocess.Popen([*args, "--out", str(tmp_path / "cut")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "cut" / "checkpoint.safetensors"
    wait_for(checkpoint)
    time.sleep(0.3)  # let it go on past a few more checkpoints, then kill it mid-run
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    state = json.loads(io.read_metadata(checkpoint, "checkpoint")["state"])
    progress = state["progress"]
    assert len(state["history"]) < 30  # it really was cut short, before the 30th epoch's end
    assert not (tmp_path / "cut" / "metrics.json").exists(), (
        progress,
        sorted(p.name for p in (tmp_path / "cut").iterdir()),
    )
    resumed = run_cli("train", "vit", "--resume", str(tmp_path / "cut"), "--no-progress", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "full", tmp_path / "cut", atol=1e-6)
    full_metrics, cut_metrics = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("full", "cut"))
    assert full_metrics["test_accuracy"] == cut_metrics["test_accuracy"]
    assert full_metrics["test_loss"] == pytest.approx(cut_metrics["test_loss"], abs=1e-6)
    full_history, cut_history = (json.loads((tmp_path / r / "history.json").read_text()) for r in ("full", "cut"))
    for a, b in zip(full_history, cut_history, strict=True):
        assert a["val_accuracy"] == b["val_accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_gpt_sigkill_then_resume(tmp_path, corpus_file):
    args = [
        sys.executable,
        "-m",
        "labformer",
        "train",
        "gpt",
        "--text",
        str(corpus_file),
        "--iters",
        "300",
        "--eval-interval",
        "100",
        "--checkpoint-every",
        "5",
        "--batch-size",
        "8",
        *TINY_GPT,
    ]
    full = subprocess.run([*args, "--out", str(tmp_path / "full")], capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    process = subprocess.Popen([*args, "--out", str(tmp_path / "cut")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "cut" / "checkpoint.safetensors"
    wait_for(checkpoint)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads(io.read_metadata(checkpoint, "checkpoint")["state"])["progress"]["step"] < 300  # cut short
    resumed = run_cli("train", "gpt", "--resume", str(tmp_path / "cut"), "--no-progress", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "full", tmp_path / "cut", atol=1e-6)


def test_nan_loss_stops_with_the_last_checkpoint_intact(tmp_path, mnist_dir, capsys):
    from labformer.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "vit",
            "--data-dir",
            str(mnist_dir),
            "--epochs",
            "3",
            "--batch-size",
            "50",
            "--lr",
            "1e30",
            "--warmup-epochs",
            "0",
            "--grad-clip",
            "0",
            "--out",
            str(out),
            *TINY_VIT,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "the loss became nan" in err or "the loss became inf" in err, err
    assert "lower --lr" in err and "last good checkpoint" in err


def test_write_error_leaves_the_previous_checkpoint_intact(tmp_path, mnist_dir, monkeypatch):
    model_config, train_config = classify.preset_configs(
        "fast",
        "mnist",
        dict(dim=16, depth=1, num_heads=2, mlp_dim=32),
        dict(epochs=2, batch_size=50, val_size=100, data_dir=str(mnist_dir), device="cpu"),
    )
    original = io.save_file
    calls = {"n": 0}

    def failing_save(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] >= 3:  # the second epoch's writes fail: disk full
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(28, "No space left on device")
        return original(tensors, path, metadata=metadata)

    monkeypatch.setattr(io, "save_file", failing_save)
    with pytest.raises(OSError, match="No space left on device; the previous version is intact"):
        classify.train_classifier(model_config, train_config, out=tmp_path / "run", progress=False)
    monkeypatch.setattr(io, "save_file", original)
    state = json.loads(io.read_metadata(tmp_path / "run" / "checkpoint.safetensors", "checkpoint")["state"])
    assert len(state["history"]) == 1 and state["progress"]["evaluated_at"] == state["progress"]["step"] > 0
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    labformer.load(tmp_path / "run")  # the best model so far still loads


def test_read_only_run_directory(tmp_path, corpus_file, capsys):
    from labformer.cli import main

    if os.geteuid() == 0:  # root ignores permissions: simulate with a file where the directory should be
        blocker = tmp_path / "blocked"
        blocker.write_text("a file, not a directory")
        out = blocker / "run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        out = locked / "run"
    code = main(["train", "gpt", "--text", str(corpus_file), "--iters", "2", "--out", str(out), *TINY_GPT])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot create run directory" in err


def test_resume_of_another_kind_is_refused(tmp_path, corpus_file):
    model_values, config = language.preset_configs(
        "cpu",
        dict(block_size=16, dim=16, depth=1, num_heads=2, mlp_dim=32),
        dict(text=str(corpus_file), iters=2, batch_size=4, eval_interval=2, eval_iters=1, device="cpu"),
    )
    language.train_language_model(model_values, config, out=tmp_path / "gpt", progress=False)
    with pytest.raises(ValueError, match="holds a gpt run; `train vit --resume` needs a vit run"):
        classify.train_classifier(None, classify.ClassifyConfig(device="cpu"), resume=tmp_path / "gpt")


# --- one command, one result: the precision is decided once and saved ---


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    return io.read_tensors(run / "model.safetensors", "model")


@pytest.mark.parametrize("kind", ["vit", "gpt"])
def test_the_same_command_twice_gives_identical_weights(tmp_path, mnist_dir, corpus_file, kind):
    if kind == "vit":
        args = ["train", "vit", "--data-dir", str(mnist_dir), "--epochs", "2", "--batch-size", "50", *TINY_VIT]
    else:
        args = ["train", "gpt", "--text", str(corpus_file), "--iters", "8", "--eval-interval", "4", *TINY_GPT]
    runs = [tmp_path / "first", tmp_path / "second"]
    for run in runs:
        result = run_cli(*args, "--out", str(run))
        assert result.returncode == 0, result.stderr
    first, second = (model_weights(run) for run in runs)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    for run in runs:  # `--amp auto` (the default) on a CPU: float32, saved resolved
        assert json.loads((run / "config.json").read_text())["train"]["amp"] == "none"
        assert json.loads((run / "metrics.json").read_text())["amp"] == "none"


def test_resume_keeps_the_saved_precision(tmp_path, mnist_dir):
    out = tmp_path / "run"
    args = ["--data-dir", str(mnist_dir), "--epochs", "1", "--batch-size", "50", "--train-size", "100", *TINY_VIT]
    assert run_cli("train", *args, "--amp", "bf16", "--out", str(out)).returncode == 0
    assert json.loads((out / "config.json").read_text())["train"]["amp"] == "bf16"
    refused = run_cli("train", "--resume", str(out), "--amp", "none", "--no-progress")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"labformer: error: {out} was trained with --amp bf16; a resumed run continues in that precision "
        "(drop --amp, or pass --amp bf16); got --amp none"
    ]
    resumed = classify.train_classifier(None, classify.ClassifyConfig(device="cpu"), resume=out, progress=False)
    assert resumed["amp"] == "bf16"
