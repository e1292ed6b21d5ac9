"""`labformer train seq2seq`, `translate` and `evaluate` on a seq2seq run: the run directory, the outputs as
the model writes them, resuming, and one clear error for each kind of bad input."""

from __future__ import annotations

import json

import pytest
import torch

from labformer import runs
from labformer.cli import main
from labformer.training.recipes import TranslationConfig
from labformer.training.translation import open_translation_run, score_split
from labformer.translate import translate_texts

TINY = ["--dim", "32", "--num-heads", "2", "--mlp-dim", "64", "--train-size", "2000", "--val-size", "100",
        "--test-size", "100", "--eval-size", "50", "--eval-interval", "20", "--batch-size", "32", "--device", "cpu",
        "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reverse"
    assert main(["train", "seq2seq", "--task", "reverse", "--iters", "40", *TINY, "--out", str(out)]) == 0
    return out


def test_a_run_holds_its_files_and_its_metrics_are_its_models(reverse_run):
    for name in (runs.CONFIG, runs.MODEL, runs.CHECKPOINT, runs.METRICS, runs.VOCAB, "mistakes.md", "curves.png",
                 "cross_attention.png"):  # fmt: skip
        assert (reverse_run / name).is_file(), name
    run = runs.read_run_config(reverse_run)
    assert run["kind"] == "seq2seq" and run["preset"] == "reverse" and run["train"]["task"] == "reverse"
    metrics = json.loads((reverse_run / runs.METRICS).read_text())
    model, data = open_translation_run(reverse_run, splits=True)
    test = data.splits["test"]
    scores = score_split(test, translate_texts(model, data, [s for s, _, _ in test]))
    assert metrics["test_exact"] == pytest.approx(scores.exact) and metrics["test_count"] == 100
    assert metrics["test_characters"] == pytest.approx(scores.characters)
    assert metrics["iters"] == 40 and metrics["best_step"] in (20, 40)
    mistakes = (reverse_run / "mistakes.md").read_text()
    assert mistakes.startswith(f"# Mistakes on the test split: {len(scores.mistakes)}")


def test_translate_prints_what_the_model_writes(reverse_run, capsys, tmp_path):
    model, data = open_translation_run(reverse_run)
    texts = ["abc", "hello", "zyxwvu"]
    assert main(["translate", str(reverse_run), *texts, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["output"] for p in printed] == translate_texts(model, data, texts)
    figure = tmp_path / "cross.png"
    assert main(["translate", str(reverse_run), "abc", "--beam", "3", "--attention", str(figure)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"abc -> {translate_texts(model, data, ['abc'], beam=3)[0]}")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_scores_the_held_out_split(reverse_run, capsys):
    assert main(["evaluate", str(reverse_run), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    metrics = json.loads((reverse_run / runs.METRICS).read_text())
    assert scored["exact"] == pytest.approx(metrics["test_exact"]) and scored["test_count"] == 100


def test_resume_gives_the_same_model(tmp_path):
    """Interrupted (a Ctrl-C after step 30, past the step-20 checkpoint) and resumed = trained at once."""
    from conftest import CtrlC

    from labformer.training.recipes import seq2seq_configs
    from labformer.training.translation import train_seq2seq

    model_values, config = seq2seq_configs(
        "reverse", {"dim": 32, "num_heads": 2, "mlp_dim": 64},
        {"iters": 40, "train_size": 2000, "val_size": 100, "test_size": 100, "eval_size": 50, "eval_interval": 20,
         "batch_size": 32, "device": "cpu"},
    )  # fmt: skip
    full = train_seq2seq(model_values, config, out=tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(model_values, config, out=tmp_path / "cut", progress=False, callbacks=[CtrlC(step=30)])
    resumed = train_seq2seq({}, TranslationConfig(device="cpu"), resume=tmp_path / "cut", progress=False)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)
    assert resumed["test_exact"] == full["test_exact"] and resumed["iters"] == 40
    a, b = runs.load(tmp_path / "full").state_dict(), runs.load(tmp_path / "cut").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "seq2seq", "--task", "pairs"], "--task pairs needs --data-file"),
        (["train", "seq2seq", "--data-file", "x.tsv"], "--data-file is read by --task pairs only"),
        (["train", "seq2seq", "--iters", "0"], "--iters must be a positive integer; got 0"),
        (["train", "seq2seq", "--num-heads", "5"], "--num-heads (5) must divide --dim (128)"),
        (["translate", "RUN", "x", "--beam", "0"], "--beam must be a positive number of hypotheses; got 0"),
        (["evaluate", str(runs.PRETRAINED / "dates"), "--text", "a.txt"], "a seq2seq model is scored on its held-out"),
        (["translate", str(runs.PRETRAINED / "text"), "x"], "holds a gpt model; this needs a seq2seq run"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_bad_pairs_file_names_its_line(tmp_path, capsys):
    data = tmp_path / "pairs.tsv"
    data.write_text("chat\tcat\n" * 20 + "chien dog\n", encoding="utf-8")
    assert (
        main(["train", "seq2seq", "--task", "pairs", "--data-file", str(data), *TINY, "--out", str(tmp_path / "r")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == f"labformer: error: {data}, line 21: no tab; each line is source<TAB>target"
    assert not (tmp_path / "r").exists()  # a run that fails before it starts leaves nothing


def test_pairs_from_a_file_train(tmp_path):
    words = ["chat", "chien", "loup", "ours", "renard", "lapin", "cheval", "vache", "mouton", "cochon"]
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{w}\t{w[::-1].upper()}\n" for w in words * 10), encoding="utf-8")
    out = tmp_path / "r"
    assert main(["train", "seq2seq", "--task", "pairs", "--data-file", str(data), "--iters", "20", *TINY,
                 "--out", str(out)]) == 0  # fmt: skip
    vocab = json.loads((out / runs.VOCAB).read_text())
    assert set(vocab["target"]) <= set("".join(words).upper())
