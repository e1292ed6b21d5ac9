"""The ``labformer`` command: train, evaluate, predict, generate, lab, doctor.

Bad input (unknown names, impossible sizes, missing or corrupt files) prints one line on stderr and
exits with code 2; Ctrl-C exits with 130 after the current checkpoint is safe.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

EXIT_BAD_INPUT = 2


def _add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    from labformer.training.runtime import AMP_CHOICES, AMP_HELP

    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--amp", default="auto", choices=AMP_CHOICES, help=AMP_HELP)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")


def _vit_parser(sub: argparse._SubParsersAction) -> None:
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
    _add_runtime_flags(parser)


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


def picked(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The flags among ``names`` that the user gave (0 and 0.0 count: only None and unset switches don't)."""
    values = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None and value is not False}


def _train_vit(args: argparse.Namespace) -> None:
    from labformer.training.classify import ClassifyConfig, preset_configs, train_classifier

    if args.resume:
        runtime = {k: getattr(args, k) for k in ("device", "amp", "compile")}
        runtime["checkpoint_every"] = args.checkpoint_every or 0
        train_classifier(None, ClassifyConfig(**runtime), resume=args.resume, progress=not args.no_progress)
        return
    model_config, train_config = preset_configs(
        args.preset, args.dataset, picked(args, MODEL_FLAGS), picked(args, TRAIN_FLAGS)
    )
    train_classifier(model_config, train_config, out=args.out, preset=args.preset, progress=not args.no_progress)


def _evaluate(args: argparse.Namespace) -> None:
    from labformer.api import load_run
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


def _predict(args: argparse.Namespace) -> None:
    from labformer.api import load_run
    from labformer.predict import predict_images

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


def _lab(args: argparse.Namespace) -> None:
    from labformer import lab

    if args.name == "list":
        for name, fn in lab.EXPERIMENTS.items():
            print(f"{name:24s} {(fn.__doc__ or '').splitlines()[0]}")
        return
    out = Path(args.out) if args.out else Path("lab-report" if args.name == "all" else ".")
    if args.name == "all":
        from labformer.lab.report import write_report

        results = write_report(out, run_dir=args.run)
        print(f"{len(results)} experiments -> {out / 'report.html'}, {out / 'report.md'} and one PNG each")
        return
    from labformer.plots import save_figure

    result = lab.run(args.name, **({"run_dir": args.run} if args.run and args.name == "heads_as_channels" else {}))
    print(f"{result.title}: {result.summary}")
    for line in result.lines():
        print(f"  {line}")
    out.mkdir(parents=True, exist_ok=True)
    save_figure(result.figure, out / f"{result.name}.png")
    print(f"figure -> {out / f'{result.name}.png'}")


def _doctor(args: argparse.Namespace) -> None:
    from labformer import doctor
    from labformer.training.runtime import resolve_device

    seconds = doctor.check_seconds(args.seconds)
    device = resolve_device(args.device)
    if not args.json:
        print(f"measuring a ViT training step in float32 and bf16 for {seconds:g} s ...", file=sys.stderr)
    report = doctor.run(device, seconds)
    print(json.dumps(report, indent=2) if args.json else doctor.format_report(report))


def _version() -> str:
    import platform

    import torch

    from labformer import __version__

    return f"labformer {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labformer", description="The Transformers lab, made real.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser("train", help="train a model (default: ViT on MNIST, preset fast)")
    models = train.add_subparsers(dest="model", metavar="MODEL")
    _vit_parser(models)
    try:
        from labformer.training.language import add_gpt_parser

        add_gpt_parser(models, commands)
    except ImportError:  # pragma: no cover - the GPT module is optional while it is being built
        pass

    evaluate = commands.add_parser("evaluate", help="test accuracy, loss and confusion matrix of a ViT run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument("--device", default="auto")

    predict = commands.add_parser("predict", help="classify image files (PNG or JPEG) with a ViT run")
    predict.add_argument("run_dir")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--device", default="auto")

    lab = commands.add_parser("lab", help="the lab's experiments: list, one by NAME, or all (report)")
    lab.add_argument("name", help="list | all | an experiment's name")
    lab.add_argument("--out", help="where figures (and the report) go (default: . or lab-report/)")
    lab.add_argument("--run", help="a trained ViT or GPT run directory for the per-head attention maps")

    doctor = commands.add_parser(
        "doctor",
        help="versions, CPU features, CUDA, and a float32 vs bf16 training-step timing on this machine",
    )
    doctor.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    doctor.add_argument("--seconds", type=float, default=5.0, help="time spent measuring (default: 5)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and (len(argv) == 1 or argv[1].startswith("-") and argv[1] not in ("-h", "--help")):
        argv.insert(1, "vit")  # `labformer train` = `labformer train vit`
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"vit": _train_vit, "evaluate": _evaluate, "predict": _predict, "lab": _lab, "doctor": _doctor}
    handler = handlers.get(args.model if args.command == "train" else args.command) or getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        handler(args)
    except (ValueError, OSError) as error:  # FileNotFoundError and PermissionError are OSErrors
        print(f"labformer: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("labformer: interrupted; the last checkpoint is intact (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
