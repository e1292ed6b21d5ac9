"""`labformer train gpt` and `labformer generate` on a small corpus, resume, and bad input."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY_GPT_ARGS, CtrlC, run_cli

import labformer
from labformer.cli import main
from labformer.training import language

TINY_GPT = [*TINY_GPT_ARGS, "--batch-size", "8", "--eval-interval", "10", "--eval-iters", "3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from conftest import SHARED_SHAKESPEARE

    path = tmp_path_factory.mktemp("text") / "small.txt"
    text = SHARED_SHAKESPEARE.read_text()[:20000] if SHARED_SHAKESPEARE.exists() else "to be or not to be\n" * 1000
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def gpt_run(corpus, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpt") / "run"
    result = run_cli("train", "gpt", "--text", str(corpus), "--iters", "30", "--out", str(out), *TINY_GPT)
    return out, result


def test_train_gpt_writes_the_run_directory(gpt_run, corpus):
    out, result = gpt_run
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("step")]
    assert [line.split(":")[0] for line in lines] == ["step 10", "step 20", "step 30"]
    assert all(re.fullmatch(r"step \d+: train loss \d\.\d{3}, val loss \d\.\d{3}", line) for line in lines)
    for name in (
        "config.json",
        "vocab.json",
        "model.safetensors",
        "history.json",
        "history.csv",
        "metrics.json",
        "curves.png",
        "sample.txt",
        "checkpoint.safetensors",
    ):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val_loss", "train_loss", "iters", "train_seconds", "tokens_per_second"} <= set(metrics)
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab == sorted(set(corpus.read_text()))
    assert metrics["val_loss"] < math.log(len(vocab)) - 0.3  # learned something beyond uniform guessing
    assert len((out / "sample.txt").read_text()) == 500
    assert set((out / "sample.txt").read_text()) <= set(corpus.read_text())


def test_generate_prints_text_from_the_prompt(gpt_run):
    out, _ = gpt_run
    result = run_cli(
        "generate", str(out), "--prompt", "ROMEO:", "--tokens", "40", "--seed", "3", "--top-k", "5", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout.rstrip("\n")) >= 46
    assert re.fullmatch(r"40 tokens in \d+\.\d\d s: [\d,]+ tokens/s", result.stderr.strip())
    again = run_cli(
        "generate", str(out), "--prompt", "ROMEO:", "--tokens", "40", "--seed", "3", "--top-k", "5", "--device", "cpu"
    )
    assert again.stdout == result.stdout  # seeded
    model = labformer.load(out)
    assert model.config.block_size == 16 and not model.training


def test_generate_several_prompts_at_once(gpt_run, capsys):
    """Repeated --prompt: one left-padded batch; greedy (top-k 1) rows equal each prompt generated alone."""
    out, _ = gpt_run
    prompts = ["ROMEO:", "A", "First Citizen:\nWe"]
    flags = ["--tokens", "30", "--top-k", "1", "--device", "cpu"]
    assert main(["generate", str(out), *[a for p in prompts for a in ("--prompt", p)], *flags]) == 0
    captured = capsys.readouterr()
    samples = re.split(r"=== sample \d of 3 ===\n", captured.out)[1:]
    assert re.fullmatch(r"90 tokens in \d+\.\d\d s: [\d,]+ tokens/s", captured.err.strip())
    for prompt, sample in zip(prompts, samples, strict=True):
        assert main(["generate", str(out), "--prompt", prompt, *flags]) == 0
        assert capsys.readouterr().out == sample


def test_the_run_scores_the_whole_validation_split_as_evaluate_does(gpt_run, capsys):
    out, result = gpt_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert main(["evaluate", str(out), "--json", "--device", "cpu"]) == 0
    assert metrics["val_loss_full"] == pytest.approx(json.loads(capsys.readouterr().out)["loss"], rel=1e-6)
    assert f"whole validation split {metrics['val_loss_full']:.3f}" in result.stdout


def test_generate_bad_input(gpt_run, capsys):
    out, _ = gpt_run
    assert main(["generate", str(out), "--prompt", "ROMEO\u00e9"]) == 2
    assert "are not in the model's vocabulary" in capsys.readouterr().err
    assert main(["generate", str(out), "--temperature", "0"]) == 2
    assert "temperature must be positive" in capsys.readouterr().err


def test_evaluate_scores_any_text_and_counts_unknown_characters(gpt_run, corpus, tmp_path, capsys):
    out, _ = gpt_run
    model = labformer.load(out)
    vocabulary = json.loads((out / "vocab.json").read_text())
    text = corpus.read_text()[:3000]
    (tmp_path / "play.txt").write_text("Ça " + text + " — fin")
    assert main(["evaluate", str(out), "--text", str(tmp_path / "play.txt"), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    known = [c for c in "Ça " + text + " — fin" if c in vocabulary]
    total, count = model.sequence_loss(torch.tensor([vocabulary.index(c) for c in known]))
    assert result["characters"] == count == len(known) - 1
    assert result["loss"] == pytest.approx(total / count)
    assert result["bits_per_character"] == pytest.approx(result["loss"] / math.log(2))
    assert result["unknown_characters"] == {"Ç": 1, "—": 1}
    assert result["outside_vocabulary"] == sum(result["unknown_characters"].values())
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0  # default: the corpus's validation split
    assert "of the validation split of" in capsys.readouterr().out
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert main(["evaluate", str(out), "--text", str(tmp_path / "latin1.txt")]) == 2
    assert "is not UTF-8" in capsys.readouterr().err
    (tmp_path / "alien.txt").write_text("ÇÇÇ")
    assert main(["evaluate", str(out), "--text", str(tmp_path / "alien.txt")]) == 2
    assert "fewer than 2 characters this model knows" in capsys.readouterr().err


def test_bf16_in_the_feed_forward_blocks_is_saved_and_kept_on_resume(corpus, tmp_path):
    out = tmp_path / "run"
    args = ["--text", str(corpus), "--iters", "20", *TINY_GPT, "--no-progress"]
    trained = run_cli("train", "gpt", *args, "--amp", "bf16-ff", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert json.loads((out / "config.json").read_text())["train"]["amp"] == "bf16-ff"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["amp"] == "bf16-ff" and math.isfinite(metrics["val_loss"])
    refused = run_cli("train", "gpt", "--resume", str(out), "--amp", "bf16")
    assert refused.returncode == 2 and "trained with --amp bf16-ff" in refused.stderr
    model = labformer.load(out)  # a plain model: loading for inference keeps float32
    assert all(layer.ff_dtype is None for layer in model.encoder.layers)


BEYOND_THE_LAB = (dict(position="rope", activation="relu2", qk_norm=True, zero_init=True), dict(optimizer="muon"))


@pytest.mark.parametrize(("model_extra", "train_extra"), [({}, {}), BEYOND_THE_LAB], ids=["lab", "beyond-the-lab"])
def test_resume_gives_the_same_model(corpus, tmp_path, model_extra, train_extra):
    """Interrupted and resumed = trained at once, for the lab's GPT and with every option beyond it
    (rotary positions, ReLU², QK-norm, zero-initialised projections, Muon's momentum in the checkpoint)."""
    model_values, config = language.preset_configs(
        "cpu",
        dict(block_size=16, dim=16, depth=1, num_heads=2, mlp_dim=32, **model_extra),
        dict(text=str(corpus), iters=30, batch_size=8, eval_interval=10, eval_iters=3, warmup_iters=2, device="cpu",
             **train_extra),
    )  # fmt: skip
    full = language.train_language_model(model_values, config, out=tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):  # during the last evaluation, after the step-20 checkpoint
        cut = [CtrlC(evaluation=3)]
        language.train_language_model(model_values, config, out=tmp_path / "cut", progress=False, callbacks=cut)
    resumed = language.train_language_model(
        {}, language.LanguageConfig(device="cpu"), resume=tmp_path / "cut", progress=False
    )
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)
    a, b = labformer.load(tmp_path / "full").state_dict(), labformer.load(tmp_path / "cut").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "gpt", "--device", "cuda:x"], "--device must be auto, cpu, cuda or cuda:N; got 'cuda:x'"),
        (["train", "gpt", "--dim", "30", "--heads", "4"], r"--num-heads \(4\) must divide --dim \(30\)"),
        (["train", "gpt", "--text", "/nonexistent.txt"], "text file /nonexistent.txt not found"),
        (["train", "gpt", "--iters", "0"], "iters must be a positive integer; got 0"),
        (["generate", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    ],
)
def test_bad_input_exits_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_a_run_that_fails_before_it_starts_leaves_no_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-corpus.txt"
    assert main(["train", "gpt", "--text", str(missing), *TINY_GPT]) == 2
    assert "no-such-corpus.txt" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []  # runs/<timestamp>-gpt was made, then removed
    assert main(["train", "vit", "--dataset", "folder", "--data-dir", str(tmp_path / "empty"), "--out", "mine"]) == 2
    assert not (tmp_path / "mine").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    assert main(["train", "gpt", "--text", str(missing), "--out", "kept", *TINY_GPT]) == 2
    assert (tmp_path / "kept" / "notes.txt").read_text() == "mine"  # never removes what holds anything
