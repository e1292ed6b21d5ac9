"""Digits that are not MNIST, read as ``labformer predict`` reads them: accuracy of trained runs, and of a
small CNN trained for 2 epochs on the same MNIST with the same augmentation in the same run.

Run: ``python benchmarks/handwriting.py [RUN_DIR ...] [--per-class 50] [--cnn] [--cnn-seeds 0,1,2]
[--tta-shift N] [--keep DIR]`` (default run: the digits model shipped in the package). With several CNN
seeds, each gets a row and a final row gives the mean of every column over the ViT runs and over the CNNs:
a seed moves these accuracies by points, so one seed of each says little.

Sets:
- ``pen`` and ``font``: ``labformer.data.digits`` (seed 0): pen strokes and typed digits, off-centre,
  slanted, thick and thin, dark on light or light on dark, blurred, noisy, low resolution;
- ``uci``: real handwriting from 43 people that is not MNIST, at 8 x 8 pixels (the UCI optical
  digits test set as shipped in scikit-learn: ``pip install --no-deps scikit-learn``; its CSV is
  read, never unpickled), when installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib.metadata
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from report import Report
from torch import nn

import labformer
from labformer.data import load_mnist
from labformer.data.digits import write_digit_folder
from labformer.io import read_json
from labformer.models.vit import ViTConfig
from labformer.predict import predict_images
from labformer.runs import read_run_config
from labformer.serve.models import PRETRAINED, run_name
from labformer.training.classify import ClassifyConfig, ClassifyTask
from labformer.training.optim import Schedule, build_optimizer
from labformer.training.recipes import VIT_PRESETS
from labformer.training.trainer import Trainer


def write_uci(folder: Path) -> bool:
    """The 1,797 UCI digits (8 x 8, 0-16) as PNGs in ``folder/uci/<digit>/``; False if not installed."""
    try:
        distribution = importlib.metadata.distribution("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return False
    path = Path(str(distribution.locate_file("sklearn/datasets/data/digits.csv.gz")))
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    for n, row in enumerate(rows):
        (folder / "uci" / str(row[-1])).mkdir(parents=True, exist_ok=True)
        pixels = (row[:-1].reshape(8, 8) * 255 // 16).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "uci" / str(row[-1]) / f"uci-{n:04d}.png")
    return True


def labelled_files(folder: Path) -> dict[str, list[tuple[Path, str]]]:
    """{set name: [(file, digit), ...]} for the pen, font (and uci) pictures under ``folder``."""
    sets: dict[str, list[tuple[Path, str]]] = {}
    for path in sorted(folder.glob("**/*.png")):
        sets.setdefault(path.name.split("-")[0], []).append((path, path.parent.name))
    return sets


def accuracy(model: nn.Module, run: dict, files: list[tuple[Path, str]], tta_shift: int = 0) -> float:
    results = []
    for start in range(0, len(files), 500):
        chunk = files[start : start + 500]
        results += predict_images(model, run, [path for path, _ in chunk], tta_shift=tta_shift)
    return float(np.mean([r["prediction"] == digit for r, (_, digit) in zip(results, files)]))


class SmallCNN(nn.Module):
    """Two 3x3 convolutions (32, 64 channels) with max pooling, then 128 hidden units: 0.4 M parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ViTConfig(image_size=28, channels=1)  # what predict reads
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def train_cnn(seed: int = 0) -> tuple[nn.Module, dict]:
    """The small CNN, 2 epochs on MNIST through labformer's Trainer, with the `fast` preset's augmentation;
    ``seed`` seeds its weights and the order of the batches."""
    augmentation = {k: v for k, v in VIT_PRESETS["fast"][1].items() if k.startswith("augment")}
    config = ClassifyConfig(epochs=2, lr=1e-3, device="cpu", amp="none", warmup_epochs=0.1, seed=seed, **augmentation)
    data = load_mnist()
    torch.manual_seed(seed)
    model = SmallCNN()
    task = ClassifyTask(model, data, config, torch.device("cpu"))
    optimizer = build_optimizer(model, config.lr, config.weight_decay)
    schedule = Schedule(config.lr, task.total_steps, round(0.1 * task.eval_every), "cosine", 0.0)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(task, optimizer, schedule, run_dir=Path(run_dir), device=torch.device("cpu"))
        trainer.fit()
        metrics = trainer.finish()
    run = {"train": dataclasses.asdict(config), "mean": data.mean, "std": data.std, "classes": data.classes}
    return model.eval(), {**run, "test_accuracy": metrics["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="ViT run directories (default: the shipped digits model)")
    parser.add_argument("--per-class", type=int, default=50, help="pen and font pictures per digit (default 50)")
    parser.add_argument("--cnn", action="store_true", help="also train the small CNN reference (about a minute)")
    parser.add_argument("--cnn-seeds", metavar="S,S,...", help="with --cnn: train one CNN per seed (default 0)")
    parser.add_argument("--keep", help="write the pictures here and keep them")
    parser.add_argument(
        "--tta-shift", type=int, default=0, metavar="N",
        help="also score every model as `labformer predict --tta-shift N` does (each picture moved N pixels 4 ways)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.cnn_seeds is not None and not args.cnn:
        parser.error("--cnn-seeds needs --cnn")
    try:
        cnn_seeds = [int(seed) for seed in (args.cnn_seeds or "0").split(",")]
    except ValueError:
        parser.error(f"--cnn-seeds must be comma-separated integers, e.g. 0,1,2; got {args.cnn_seeds!r}")
    with tempfile.TemporaryDirectory() as work:
        folder = Path(args.keep or work)
        write_digit_folder(folder / "synthetic", args.per_class, seed=0)
        has_uci = write_uci(folder)
        sets = labelled_files(folder)
        names = ["pen", "font", *(["uci"] if has_uci else [])]
        rows = []
        shifts = sorted({0, args.tta_shift})
        total = sum(len(sets[name]) for name in names)

        scores: dict[tuple[str, int], list[list[float]]] = {}  # (ViT or CNN, shift) -> per model, per column

        def add_rows(label: str, kind: str, mnist: float, model: nn.Module, run: dict) -> None:
            for shift in shifts:
                values = [mnist, *(accuracy(model, run, sets[name], shift) for name in names)]
                values.append(sum(value * len(sets[name]) for value, name in zip(values[1:], names)) / total)
                scores.setdefault((kind, shift), []).append(values)
                rows.append([label + (f", --tta-shift {shift}" if shift else ""), f"{mnist:.2%}"])
                rows[-1] += [f"{value:.1%}" for value in values[1:]]
                print(" | ".join(rows[-1]), flush=True)

        for run_dir in args.runs or [str(PRETRAINED / "digits")]:
            model, run = labformer.load(run_dir, device="cpu"), read_run_config(run_dir)
            mnist = read_json(Path(run_dir) / "metrics.json", "metrics")["test_accuracy"]
            add_rows(run_name(Path(run_dir)), "ViT", mnist, model, run)
        for seed in cnn_seeds if args.cnn else []:
            model, run = train_cnn(seed)
            label = "small CNN, 2 epochs, the same augmentation" + (f", seed {seed}" if len(cnn_seeds) > 1 else "")
            add_rows(label, "CNN", run["test_accuracy"], model, run)
        for (kind, shift), table in scores.items():
            if len(table) > 1:
                mean = np.mean(table, axis=0)
                label = f"mean of the {len(table)} {kind}s" + (f", --tta-shift {shift}" if shift else "")
                rows.append([label, f"{mean[0]:.2%}", *(f"{value:.1%}" for value in mean[1:])])
        columns = [f"{name} ({len(sets[name])})" for name in names]
        report = Report("handwriting")
        report.table("Accuracy on digits that are not MNIST, read as `labformer predict` reads them.",
                     ["model", "MNIST test", *columns, f"all ({total:,})"], rows)  # fmt: skip
        vit, cnn = (np.mean(scores[kind, 0], axis=0)[-1] if (kind, 0) in scores else None for kind in ("ViT", "CNN"))
        if vit is not None and cnn is not None:
            report.target("digits that are not MNIST: at least a small CNN's accuracy (all sets)",
                          f"{vit:.1%} against {cnn:.1%}", vit >= cnn, f"by {(cnn - vit) * 100:.1f} points")  # fmt: skip
        report.save()


if __name__ == "__main__":
    main()
