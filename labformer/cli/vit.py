"""``labformer train vit``, ``evaluate`` and ``predict``: the Vision Transformer of Part 6 on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labformer.cli.flags import add_runtime_flags, picked, resume_settings

__all__ = ["add_vit_parser", "evaluate", "predict", "train_vit"]


def add_vit_parser(sub: argparse._SubParsersAction) -> None:
    """``labformer train vit``."""
    parser = sub.add_parser(
        "vit",
        help="train a Vision Transformer (default: MNIST, preset fast)",
        description="Train a Vision Transformer on MNIST or CIFAR-10.",
    )
    parser.add_argument("--dataset", default="mnist", help="mnist | cifar10 (default: mnist)")
    parser.add_argument("--data-dir", help="IDX files (MNIST) or the CIFAR-10 archive; default: embedded / cache")
    parser.add_argument("--preset", default="fast", help="fast | best | lab (default: fast)")
    parser.add_argument("--out", help="run directory (default: runs/<timestamp>-vit-<dataset>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    model = parser.add_argument_group("model (overrides the preset)")
    for flag in ("patch-size", "dim", "depth", "num-heads", "mlp-dim"):
        model.add_argument(f"--{flag}", type=int)
    model.add_argument("--heads", dest="num_heads", type=int, help="alias of --num-heads")
    model.add_argument("--pool", choices=["cls", "mean"])
    model.add_argument("--dropout", type=float)
    model.add_argument("--position", choices=["learned", "sincos"])
    model.add_argument("--backend", choices=["labformer", "torch"])
    train = parser.add_argument_group("training (overrides the preset)")
    for flag, kind in (
        ("epochs", int),
        ("batch-size", int),
        ("lr", float),
        ("weight-decay", float),
        ("warmup-epochs", float),
        ("label-smoothing", float),
        ("grad-clip", float),
        ("val-size", int),
        ("train-size", int),
        ("seed", int),
        ("min-lr-ratio", float),
        ("checkpoint-every", int),
    ):
        train.add_argument(f"--{flag}", type=kind)
    train.add_argument("--schedule", choices=["cosine", "constant"])
    train.add_argument("--augment", choices=["auto", "affine", "crop_flip", "none"])
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_runtime_flags(parser)


MODEL_FLAGS = ("patch_size", "dim", "depth", "num_heads", "mlp_dim", "pool", "dropout", "position", "backend")
TRAIN_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "grad_clip",
    "val_size",
    "train_size",
    "seed",
    "min_lr_ratio",
    "schedule",
    "augment",
    "data_dir",
    "device",
    "amp",
    "compile",
    "checkpoint_every",
)


def train_vit(args: argparse.Namespace) -> None:
    from labformer.training.classify import ClassifyConfig, preset_configs, train_classifier

    if args.resume:
        config = ClassifyConfig(**resume_settings(args))
        train_classifier(None, config, resume=args.resume, progress=not args.no_progress)
        return
    model_config, train_config = preset_configs(
        args.preset, args.dataset, picked(args, MODEL_FLAGS), picked(args, TRAIN_FLAGS)
    )
    train_classifier(model_config, train_config, out=args.out, preset=args.preset, progress=not args.no_progress)


def evaluate(args: argparse.Namespace) -> None:
    from labformer.runs import load_run
    from labformer.training.classify import evaluate

    model, run = load_run(args.run_dir, device=args.device)
    if run["kind"] != "vit":
        raise ValueError(f"{args.run_dir} holds a {run['kind']} model; evaluate scores image classifiers")
    from labformer.data import load_images

    train = run["train"]
    data = load_images(
        train["dataset"], args.data_dir or train.get("data_dir"), val_size=train["val_size"], seed=train["seed"]
    )
    result = evaluate(model, data, "test")
    if args.json:
        print(
            json.dumps(
                {"test_accuracy": result.accuracy, "test_loss": result.loss, "confusion": result.confusion.tolist()}
            )
        )
        return
    print(f"test accuracy {100 * result.accuracy:.2f}%  test loss {result.loss:.4f}  ({len(result.labels)} images)")
    print("confusion matrix (rows: true, columns: predicted)")
    classes = data.classes
    width = max(5, *(len(c) for c in classes))
    print(" " * width + "".join(c[:width].rjust(width + 1) for c in classes))
    for name, row in zip(classes, result.confusion.tolist()):
        print(name[:width].rjust(width) + "".join(str(v).rjust(width + 1) for v in row))


def predict(args: argparse.Namespace) -> None:
    from labformer.predict import predict_images
    from labformer.runs import load_run

    model, run = load_run(args.run_dir, device=args.device)
    if run["kind"] != "vit":
        raise ValueError(f"{args.run_dir} holds a {run['kind']} model; predict needs an image classifier run")
    results = predict_images(model, run, [Path(p) for p in args.images])
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            top = ", ".join(f"{label} {p:.2f}" for label, p in result["top"])
            print(f"{result['path']}: {result['prediction']} ({top})")
