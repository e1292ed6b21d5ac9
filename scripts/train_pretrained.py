"""Trains the three small models shipped inside the package for ``labformer serve`` and writes them to
``labformer/serve/pretrained/{digits,text,dates}``: rerun it to rebuild them (about 15 minutes on 2 CPU
cores).

- digits: ``labformer train`` (ViT, preset fast, MNIST, seed 0);
- text: ``labformer train gpt`` (preset cpu, Tiny Shakespeare, seed 1337);
- dates: ``labformer train seq2seq`` (encoder–decoder, preset dates, seed 0).

The weights are stored in float16 (half the bytes; the model computes in float32 after loading). The
script then scores the stored weights — test accuracy of the ViT, validation loss of the GPT (random
batches, and the whole split), exact match and character accuracy of the encoder–decoder on its held-out
test split — and records those numbers in each ``metrics.json`` under "shipped".

Run: ``python scripts/train_pretrained.py [--work DIR] [--only digits|text|dates]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from labformer import io, runs
from labformer.serve.models import PRETRAINED


def train(args: list[str], out: Path) -> None:
    command = [sys.executable, "-m", "labformer", "train", *args, "--out", str(out), "--no-progress", "--amp", "none"]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def ship(run_dir: Path, target: Path, names: tuple[str, ...]) -> None:
    """Copies the run's files and its best weights in float16 to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(run_dir / name, target / name)
    weights = io.read_tensors(run_dir / runs.MODEL, "model weights")
    io.write_tensors(target / runs.MODEL, {k: v.half() if v.is_floating_point() else v for k, v in weights.items()})


def score_digits(target: Path) -> dict:
    from labformer.data import load_images
    from labformer.training.classify import evaluate

    model, run = runs.load_run(target)
    train = run["train"]
    data = load_images(train["dataset"], train["data_dir"], val_size=train["val_size"], seed=train["seed"])
    test = evaluate(model, data, "test")
    return {"test_accuracy": test.accuracy, "test_loss": test.loss}


def score_text(target: Path) -> dict:
    from labformer.data.text import CharTokenizer, load_text
    from labformer.training.language import estimate_loss
    from labformer.training.recipes import LanguageConfig

    model, run = runs.load_run(target)
    tokenizer = CharTokenizer(io.read_json(target / runs.VOCAB, "vocabulary"))
    config = LanguageConfig.from_dict(run["train"])
    data = load_text(config.text, block_size=model.config.block_size, tokenizer=tokenizer)
    generator = torch.Generator().manual_seed(config.seed + 1 + config.iters)  # the final evaluation's batches
    losses = estimate_loss(model, data, config, generator, torch.device("cpu"))
    total, count = model.sequence_loss(data.val)  # every character of the validation split
    return {"val_loss": losses["val"], "train_loss": losses["train"], "val_loss_full": total / count}


def score_dates(target: Path) -> dict:
    from labformer.training.translation import open_translation_run, score_split
    from labformer.translate import translate_texts

    model, data = open_translation_run(target, splits=True)
    test = data.splits["test"]
    scores = score_split(test, translate_texts(model, data, [s for s, _, _ in test]))
    return {"test_exact": scores.exact, "test_characters": scores.characters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="where the training runs go (default: a temporary directory)")
    parser.add_argument("--only", choices=("digits", "text", "dates"), help="rebuild only this model")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="labformer-pretrained-"))
    models = (
        ("digits", ["vit", "--preset", "fast"], (runs.CONFIG, runs.METRICS, runs.HISTORY), score_digits),
        (
            "text",
            ["gpt", "--preset", "cpu"],
            (runs.CONFIG, runs.METRICS, runs.HISTORY, runs.VOCAB, runs.SAMPLE),
            score_text,
        ),
        ("dates", ["seq2seq", "--preset", "dates"], (runs.CONFIG, runs.METRICS, runs.HISTORY, runs.VOCAB), score_dates),
    )
    models = tuple(m for m in models if args.only in (None, m[0]))
    for name, command, _, _ in models:
        train(command, work / name)
    for name, _, files, score in models:
        target = PRETRAINED / name
        ship(work / name, target, files)
        metrics = io.read_json(target / runs.METRICS, "metrics")
        metrics["shipped"] = {"weights": "float16", **score(target)}
        io.write_json(target / runs.METRICS, metrics)
        size = (target / runs.MODEL).stat().st_size
        print(f"{name}: {target} ({size / 1e6:.2f} MB of weights), {metrics['shipped']}", flush=True)


if __name__ == "__main__":
    main()
