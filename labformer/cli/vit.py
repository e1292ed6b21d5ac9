"""``labformer train vit``, ``evaluate`` and ``predict``: the Vision Transformer of Part 6 on the command line."""

from __future__ import annotations

import argparse
import json
import sys
import typing

from labformer.cli.flags import RUNTIME, add_config_flags, picked

__all__ = ["add_vit_parser", "evaluate", "predict", "train_vit"]


def add_vit_parser(sub: argparse._SubParsersAction) -> None:
    """``labformer train vit``: its flags are generated from ViTConfig and ClassifyConfig."""
    from labformer.models.vit import ViTConfig
    from labformer.training.recipes import VIT_PRESETS as PRESETS
    from labformer.training.recipes import ClassifyConfig

    parser = sub.add_parser(
        "vit",
        help="train a Vision Transformer (default: MNIST, preset fast)",
        description="Train a Vision Transformer on MNIST, CIFAR-10 or a folder of labelled images. Every setting "
        "overrides the preset's value.",
    )
    parser.add_argument(
        "--dataset", default="mnist", choices=typing.get_args(typing.get_type_hints(ClassifyConfig)["dataset"]),
        help="mnist | cifar10 | folder (any labelled folder or tar: --data-dir) (default: mnist)",
    )  # fmt: skip
    parser.add_argument(
        "--preset", default="fast", choices=list(PRESETS), help=f"{' | '.join(PRESETS)} (default: fast)"
    )
    parser.add_argument("--out", help="run directory (default: runs/<timestamp>-vit-<dataset>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model (ViTConfig; the image shape comes from the data set)")
    skip = ("image_size", "channels", "num_classes")  # set by the data set
    model_flags = add_config_flags(model, ViTConfig, {name: values[0] for name, values in PRESETS.items()}, skip=skip)
    model.add_argument("--heads", dest="num_heads", type=int, help="alias of --num-heads")
    train = parser.add_argument_group("training (ClassifyConfig)")
    presets = {name: values[1] for name, values in PRESETS.items()}
    train_flags = add_config_flags(train, ClassifyConfig, presets, skip=("dataset",))
    parser.set_defaults(model_flags=model_flags, train_flags=train_flags)


def train_vit(args: argparse.Namespace) -> None:
    from labformer.plots import ClassifierFigures
    from labformer.training.classify import load_data, train_classifier
    from labformer.training.recipes import ClassifyConfig, classify_config, vit_configs

    shown = dict(progress=not args.no_progress, callbacks=[ClassifierFigures()])
    if args.resume:
        train_classifier(None, ClassifyConfig(**picked(args, RUNTIME)), resume=args.resume, **shown)
        return
    train_flags, data, shape = picked(args, args.train_flags), None, None
    if args.dataset == "folder":  # the images give the model its input shape and classes
        data = load_data(classify_config(args.preset, "folder", train_flags))
        shape = dict(image_size=data.image_size, channels=data.channels, num_classes=len(data.classes))
    model_flags = picked(args, args.model_flags)
    model_config, train_config = vit_configs(args.preset, args.dataset, model_flags, train_flags, shape)
    train_classifier(model_config, train_config, out=args.out, preset=args.preset, data=data, **shown)


def evaluate(args: argparse.Namespace) -> None:
    from labformer.runs import load_run
    from labformer.training.classify import evaluate

    model, run = load_run(args.run_dir, device=args.device)
    if run["kind"] == "gpt":
        from labformer.cli.gpt import evaluate_text

        return evaluate_text(model, args)
    if run["kind"] == "seq2seq":
        from labformer.cli.seq2seq import evaluate_pairs

        if args.text or args.data_dir:
            raise ValueError("a seq2seq model is scored on its held-out test split; --text and --data-dir do not apply")
        return evaluate_pairs(args)
    if run["kind"] != "vit":
        raise ValueError(f"{args.run_dir} holds a {run['kind']} model; evaluate scores vit, gpt and seq2seq runs")
    if args.text:
        raise ValueError("--text scores GPT runs; for a ViT run pass --data-dir")
    from labformer.data import load_run_images

    data = load_run_images(run["train"], args.data_dir)
    tta_shift = run["train"].get("tta_shift", 0)  # as the run scored its test set
    tta_flip = run["train"].get("tta_flip", False)
    result = evaluate(model, data, "test", tta_shift=tta_shift, tta_flip=tta_flip)
    if args.json:
        print(
            json.dumps(
                {
                    "test_accuracy": result.accuracy,
                    "test_loss": result.loss,
                    "tta_shift": tta_shift,
                    "tta_flip": tta_flip,
                    "confusion": result.confusion.tolist(),
                }
            )
        )
        return
    tta = f", each also moved {tta_shift} pixel(s) 4 ways" if tta_shift else ""
    tta += ", each also mirrored" if tta_flip else ""
    tta += " (test-time augmentation)" if tta else ""
    print(
        f"test accuracy {100 * result.accuracy:.2f}%  test loss {result.loss:.4f}  ({len(result.labels)} images{tta})"
    )
    print("confusion matrix (rows: true, columns: predicted)")
    classes = data.classes
    width = max(5, *(len(c) for c in classes))
    print(" " * width + "".join(c[:width].rjust(width + 1) for c in classes))
    for name, row in zip(classes, result.confusion.tolist()):
        print(name[:width].rjust(width) + "".join(str(v).rjust(width + 1) for v in row))


def predict(args: argparse.Namespace) -> None:
    from labformer.predict import image_paths, predict_images
    from labformer.runs import load_run

    model, run = load_run(args.run_dir, device=args.device)
    if run["kind"] != "vit":
        raise ValueError(f"{args.run_dir} holds a {run['kind']} model; predict needs an image classifier run")
    results = predict_images(model, run, image_paths(args.images), tta_shift=args.tta_shift, tta_flip=args.tta_flip)
    failed = 0
    for result in results:  # every readable file is answered; each unreadable one gets its own line
        if "error" in result:
            failed += 1
            print(f"labformer: error: {result['error']}", file=sys.stderr)
        elif args.json:
            print(json.dumps(result))
        elif result.get("empty"):
            print(f"{result['path']}: no digit found in {result['path']} (nothing stands out from the paper)")
        else:
            top = ", ".join(f"{label} {p:.2f}" for label, p in result["top"])
            print(f"{result['path']}: {result['prediction']} ({top})")
    if failed:
        raise ValueError(f"{failed} of {len(results)} images could not be read")
