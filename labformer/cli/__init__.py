"""The ``labformer`` command: train, evaluate, predict, generate, translate, lab, doctor, exercises, check.

Bad input (unknown names, impossible sizes, missing or corrupt files) prints one line on stderr and
exits with code 2; Ctrl-C exits with 130 after the current checkpoint is safe.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from labformer.cli.exercises import add_exercises_parsers
from labformer.cli.flags import DEVICE_HELP, SHIPPED_HELP, run_argument
from labformer.cli.gpt import add_gpt_parser
from labformer.cli.seq2seq import add_seq2seq_parser
from labformer.cli.vit import add_vit_parser, evaluate, predict, train_vit

__all__ = ["as_flags", "build_parser", "main", "option_names"]

EXIT_BAD_INPUT = 2


def _lab(args: argparse.Namespace) -> None:
    from labformer import lab

    if args.name == "list":
        for name, fn in lab.EXPERIMENTS.items():
            summary = (fn.__doc__ or "").split("\n\n")[0]  # the first paragraph, whole, on one line
            print(f"{name:24s} {' '.join(summary.split())}")
        return
    takers = ["all", *lab.RUN_KINDS]
    if args.run and args.name not in takers:
        raise ValueError(f"--run is taken by {', '.join(takers)} only; the experiment {args.name} does not use a run")
    if args.run and args.name != "all":
        from labformer.runs import read_run_config

        for run_dir in args.run:
            kind, wanted = read_run_config(run_dir)["kind"], lab.RUN_KINDS[args.name]
            if kind not in wanted:
                raise ValueError(f"--run {run_dir} holds a {kind} run; {args.name} reads {' or '.join(wanted)} runs")
    out = Path(args.out) if args.out else Path("lab-report" if args.name == "all" else ".")
    if args.name == "all":
        from labformer.lab.report import write_report

        results = write_report(out, run_dirs=args.run)
        print(f"{len(results)} experiments -> {out / 'report.html'}, {out / 'report.md'} and one PNG each")
        return
    from labformer.plots import save_figure

    result = lab.run(args.name, **lab.run_arguments(args.name, args.run))
    print(f"{result.title}: {result.summary}")
    for line in result.lines():
        print(f"  {line}")
    out.mkdir(parents=True, exist_ok=True)
    save_figure(result.figure, out / f"{result.name}.png")
    print(f"figure -> {out / f'{result.name}.png'}")


def _doctor(args: argparse.Namespace) -> None:
    from labformer import doctor
    from labformer.device import resolve_device

    seconds = doctor.check_seconds(args.seconds)
    device = resolve_device(args.device)
    if not args.json:
        print(f"measuring ViT and GPT training steps in float32 and bf16 for {seconds:g} s ...", file=sys.stderr)
    report = doctor.run(device, seconds)
    print(json.dumps(report, indent=2) if args.json else doctor.format_report(report))


def _version() -> str:
    import platform

    import torch

    from labformer import __version__

    return f"labformer {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


class _Parser(argparse.ArgumentParser):
    """argparse with bad flags reported in one line (as every other bad input is), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labformer", description="The Transformers lab, made real.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser("train", help="train a model (default: ViT on MNIST, preset fast)")
    models = train.add_subparsers(dest="model", metavar="MODEL")
    add_vit_parser(models)
    add_gpt_parser(models, commands)
    add_seq2seq_parser(models, commands)

    evaluate = commands.add_parser(
        "evaluate",
        help="a ViT run: test accuracy, loss and confusion matrix; a GPT run: loss per character on --text FILE; "
        "a seq2seq run: exact match on its held-out test pairs",
    )
    evaluate.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_argument,
        help="a `labformer train` run directory (ViT, GPT or seq2seq), " + SHIPPED_HELP.format("digits, text, dates"),
    )  # fmt: skip
    evaluate.add_argument("--data-dir", help="ViT: the data set's files (default: the run's)")
    evaluate.add_argument("--text", help="GPT: any UTF-8 text file to score (default: the run's corpus)")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)

    predict = commands.add_parser(
        "predict",
        help="classify image files (PNG or JPEG) with a ViT run",
        description="Classify pictures with a ViT run, e.g. `labformer predict digits my_digit.png` with the digits "
        "model shipped with labformer (no training needed).",
    )
    predict.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_argument, help="a ViT run directory, " + SHIPPED_HELP.format("digits")
    )
    predict.add_argument(
        "images", nargs="+", metavar="IMAGE",
        help="image files (PNG, JPEG, ...; transparent areas count as paper) or folders of them",
    )  # fmt: skip
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument(
        "--tta-shift", type=int, default=0, metavar="N",
        help="also score each picture moved N pixels right, left, down and up, and average (5x the work; 0 = off)",
    )  # fmt: skip
    predict.add_argument(
        "--tta-flip", action="store_true", help="also score each picture (and each move) mirrored, and average"
    )
    predict.add_argument("--device", default="auto", help=DEVICE_HELP)

    lab = commands.add_parser("lab", help="the lab's experiments: list, one by NAME, or all (report)")
    lab.add_argument("name", metavar="NAME", help="list | all | an experiment's name (see `labformer lab list`)")
    lab.add_argument("--out", help="where figures (and the report) go (default: . or lab-report/)")
    lab.add_argument(
        "--run", metavar="RUN_DIR", action="append", type=run_argument,
        help="a trained run (repeatable): a ViT or GPT run for heads_as_channels' per-head maps, a seq2seq run "
        "of the dates task for self_vs_cross (default: the shipped models); all passes each to its experiment",
    )  # fmt: skip

    export = commands.add_parser("export", help="a ViT run as an ONNX file, checked with ONNX Runtime")
    export.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_argument, help="a ViT run directory, " + SHIPPED_HELP.format("digits")
    )
    export.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    export.add_argument("--attention", action="store_true", help="also output every layer's attention weights")
    export.set_defaults(handler=_export)

    view = commands.add_parser(
        "attention",
        help="a page's attention view without a browser: a digit's heads, a text's or a date's attention, "
        "as PNG, SVG or standalone HTML",
        description="Writes what labformer serve's pages show for an input: the ViT's class-token attention "
        "for --image, the GPT's causal attention for --text, an encoder-decoder's attention for --text.",
    )
    view.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_argument,
        help="a ViT, GPT or seq2seq run directory, " + SHIPPED_HELP.format("digits, text, dates"),
    )  # fmt: skip
    source = view.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", dest="image_file", metavar="FILE", help="a PNG or JPEG image (ViT runs)")
    source.add_argument("--text", metavar="TEXT", help="a text (GPT runs) or an input (seq2seq runs)")
    view.add_argument("--out", required=True, metavar="FILE", help="the view to write: .png, .svg or .html")
    view.add_argument("--layer", type=int, help="the layer to select, from 1 (default: the last)")
    view.add_argument("--head", type=int, help="the head to select, from 1 (default: the first; for a text, "
                      "the mean of the layer's heads)")  # fmt: skip
    view.add_argument("--position", type=int, help="GPT: the character whose attention shades the text, from 1 "
                      "(default: the last)")  # fmt: skip
    view.add_argument("--kind", default="cross", help="seq2seq: encoder, decoder or cross (default: cross)")
    view.add_argument("--beam", type=int, default=1, help="seq2seq: beam width (default: 1, greedy)")
    view.set_defaults(handler=_attention)

    serve = commands.add_parser(
        "serve",
        help="a local web page: draw a digit and watch every head attend; watch the GPT write; watch an "
        "encoder-decoder read a date",
        description="Serves ViT, GPT and seq2seq runs (default: the newest under runs/, else the pretrained models "
        "shipped with labformer) at http://localhost:PORT/.",
    )
    serve.add_argument(
        "run_dirs", nargs="*", metavar="RUN_DIR", type=run_argument,
        help="ViT, GPT and/or seq2seq run directories, or shipped models' names (digits, text, dates)",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--lab", default="lab-report", help="the `labformer lab all` report to show (default: lab-report)"
    )
    serve.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="also answer requests for this host name (repeatable; '*' answers any name, which a web page "
        "can abuse by DNS rebinding); localhost, 127.0.0.1, [::1] and --host are always answered",
    )  # fmt: skip
    serve.add_argument(
        "--allow-build", action="store_true",
        help="let visitors rebuild the lab report from the lab page (every experiment, about 15 s of CPU)",
    )  # fmt: skip
    serve.set_defaults(handler=_serve)

    doctor = commands.add_parser(
        "doctor",
        help="versions, CPU features, CUDA, and ViT and GPT training steps timed in float32 and bf16 here",
    )
    doctor.add_argument("--device", default="auto", help=DEVICE_HELP)
    doctor.add_argument("--seconds", type=float, default=5.0, help="time spent measuring (default: 5)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    add_exercises_parsers(commands)
    return parser


def _export(args: argparse.Namespace) -> None:
    from labformer.export import export_onnx
    from labformer.runs import load_run

    model, run = load_run(args.run_dir)
    if run["kind"] != "vit":
        raise ValueError(f"{args.run_dir} holds a {run['kind']} run; ONNX export takes ViT runs")
    checked = export_onnx(model, args.onnx, attention=args.attention)
    config = model.config
    shapes = [f"logits (batch, {config.num_classes})"]
    if args.attention:
        tokens = config.num_patches + (config.pool == "cls")
        shapes.append(f"attention (batch, {config.depth}, {config.num_heads}, {tokens}, {tokens})")
    differences = ", ".join(f"{k} {v:.1e}" for k, v in checked["max_abs_difference"].items())
    print(
        f"{args.onnx} ({checked['bytes'] / 1e3:,.0f} kB): images (batch, {config.channels}, {config.image_size}, "
        f"{config.image_size}) normalised with the run's mean {run['mean']} and std {run['std']} -> "
        f"{', '.join(shapes)}; ONNX Runtime vs PyTorch on {checked['check_batch']} random images, "
        f"max abs difference: {differences}"
    )


def _attention(args: argparse.Namespace) -> None:
    from labformer import runs
    from labformer.serve import models, views

    kind = runs.read_run_config(args.run_dir)["kind"]
    if Path(args.out).suffix.lower() not in views.FORMATS:
        raise ValueError(f"--out must end in {', '.join(views.FORMATS)}; got {Path(args.out).name}")
    if kind == "vit":
        if args.image_file is None:
            raise ValueError(f"{args.run_dir} holds a ViT run: pass --image FILE")
        try:
            image = Path(args.image_file).read_bytes()
        except OSError as error:
            raise ValueError(f"--image {args.image_file}: cannot read it ({error.strerror or error})") from None
        answer = models.DigitModel(Path(args.run_dir)).predict(image)
        figure = views.digit_view(answer, args.layer, args.head)
        probability = max(answer["probabilities"])
        details = [f"image: {Path(args.image_file).name}", f"prediction: {answer['prediction']} ({probability:.1%})"]
    elif kind in ("gpt", "seq2seq"):
        if args.text is None:
            raise ValueError(f"{args.run_dir} holds a {kind} run: pass --text TEXT")
        if kind == "gpt":
            answer = models.TextModel(Path(args.run_dir)).attention(args.text)
            figure = views.text_view(answer, args.position, args.layer, args.head)
            details = [f"text: {''.join(answer['tokens'])!r}"]
        else:
            if not 1 <= args.beam <= models.MAX_BEAM:
                raise ValueError(f"--beam must be between 1 and {models.MAX_BEAM}; got {args.beam}")
            answer = models.Seq2SeqModel(Path(args.run_dir)).translate(args.text, args.beam)
            figure = views.seq2seq_view(answer, args.kind, args.layer)
            details = [f"input: {args.text!r}", f"output: {answer['output']!r}"]
    else:
        raise ValueError(f"{args.run_dir} holds a {kind} run; attention views take vit, gpt and seq2seq runs")
    name = runs.run_name(args.run_dir)
    views.save_view(figure, Path(args.out), f"labformer attention: {name}", [f"model: {name}", *details])
    print(f"{args.out}: {', '.join(details)}")


def _serve(args: argparse.Namespace) -> None:
    from labformer.serve import serve

    serve(
        args.run_dirs,
        host=args.host,
        port=args.port,
        lab_dir=args.lab,
        allow_hosts=args.allow_host,
        allow_build=args.allow_build,
    )  # fmt: skip  (uvicorn stops on Ctrl-C)


def option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Every optional flag of the command and its subcommands, by the setting it fills: {"top_k": "--top-k"}."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names.update(option_names(sub))
        elif action.option_strings and action.dest not in ("help", "version"):
            spelled = "--" + action.dest.replace("_", "-")
            names.setdefault(action.dest, spelled if spelled in action.option_strings else action.option_strings[-1])
    return names


def as_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with each setting's field name, where it is the subject ("top_k must be positive",
    "patch_size (5) must divide image_size (28)"), replaced by its flag ("--top-k must be positive")."""
    names = option_names(parser)
    fields = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w-])({fields})(?= must\b| \(| is\b)")
    return pattern.sub(lambda match: names[match.group(1)], message)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and (len(argv) == 1 or argv[1].startswith("-") and argv[1] not in ("-h", "--help")):
        argv.insert(1, "vit")  # `labformer train` = `labformer train vit`
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"vit": train_vit, "evaluate": evaluate, "predict": predict, "lab": _lab, "doctor": _doctor}
    handler = handlers.get(args.model if args.command == "train" else args.command) or getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        code = handler(args)
        sys.stdout.flush()  # where a reader that left (`| head`) shows, when the output was buffered
    except BrokenPipeError:  # the reader has what it wanted: stop quietly (as the Python docs advise)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ValueError as error:  # the settings' checks name fields: say the flags the user typed instead
        print(f"labformer: error: {as_flags(str(error), parser)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # FileNotFoundError and PermissionError are OSErrors
        print(f"labformer: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("labformer: interrupted; the last checkpoint is intact (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
