"""``labformer train gpt`` and ``labformer generate``: the character GPT of Part 5 on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from labformer.cli.flags import add_runtime_flags, picked, resume_settings

__all__ = ["add_gpt_parser"]


MODEL_FLAGS = ("block_size", "dim", "depth", "num_heads", "mlp_dim", "dropout", "position")
TRAIN_FLAGS = (
    "text",
    "iters",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "warmup_iters",
    "weight_decay",
    "grad_clip",
    "eval_interval",
    "eval_iters",
    "seed",
    "device",
    "amp",
    "compile",
    "checkpoint_every",
    "time_limit",
)


def add_gpt_parser(models: argparse._SubParsersAction, commands: argparse._SubParsersAction) -> None:
    """``labformer train gpt`` and ``labformer generate``."""
    parser = models.add_parser(
        "gpt",
        help="train the character GPT on Tiny Shakespeare (or --text FILE)",
        description="Train a character-level GPT.",
    )
    parser.add_argument("--text", help="UTF-8 corpus (default: Tiny Shakespeare; $LABFORMER_SHAKESPEARE)")
    parser.add_argument("--preset", default="cpu", help="cpu | lab (default: cpu)")
    parser.add_argument("--out", help="run directory (default: runs/<timestamp>-gpt)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    model = parser.add_argument_group("model (overrides the preset)")
    for flag in ("block-size", "dim", "depth", "num-heads", "mlp-dim"):
        model.add_argument(f"--{flag}", type=int)
    model.add_argument("--heads", dest="num_heads", type=int, help="alias of --num-heads")
    model.add_argument("--dropout", type=float)
    model.add_argument("--position", choices=["learned", "sincos"])
    model.add_argument("--no-tie-weights", action="store_true", help="a separate output matrix")
    train = parser.add_argument_group("training (overrides the preset)")
    for flag, kind in (
        ("iters", int),
        ("batch-size", int),
        ("lr", float),
        ("min-lr-ratio", float),
        ("warmup-iters", int),
        ("weight-decay", float),
        ("grad-clip", float),
        ("eval-interval", int),
        ("eval-iters", int),
        ("seed", int),
        ("checkpoint-every", int),
        ("time-limit", float),
    ):
        train.add_argument(f"--{flag}", type=kind)
    train.add_argument("--no-progress", action="store_true")
    add_runtime_flags(parser)
    parser.set_defaults(handler=_train_gpt)

    generate = commands.add_parser("generate", help="sample text from a trained GPT run")
    generate.add_argument("run_dir")
    generate.add_argument("--prompt", default="\n")
    generate.add_argument("--tokens", type=int, default=500)
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--device", default="auto")
    generate.set_defaults(handler=_generate)


def _train_gpt(args: argparse.Namespace) -> None:
    from labformer.training.language import LanguageConfig, preset_configs, train_language_model

    if args.resume:
        config = LanguageConfig(**resume_settings(args))
        train_language_model({}, config, resume=args.resume, progress=not args.no_progress)
        return
    model = picked(args, MODEL_FLAGS)
    if args.no_tie_weights:
        model["tie_weights"] = False
    model_values, config = preset_configs(args.preset, model, picked(args, TRAIN_FLAGS))
    train_language_model(model_values, config, out=args.out, preset=args.preset, progress=not args.no_progress)


def _generate(args: argparse.Namespace) -> None:
    from labformer.data.text import CharTokenizer
    from labformer.io import read_json
    from labformer.runs import VOCAB, load_run

    if args.tokens <= 0:
        raise ValueError(f"--tokens must be positive; got {args.tokens}")
    model, run = load_run(args.run_dir, device=args.device)
    if run["kind"] != "gpt":
        raise ValueError(f"{args.run_dir} holds a {run['kind']} model; generate needs a gpt run")
    tokenizer = CharTokenizer(read_json(Path(args.run_dir) / VOCAB, "vocabulary"))
    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    device = next(model.parameters()).device
    prompt = tokenizer.encode(args.prompt)[None].to(device)
    generator = torch.Generator(device).manual_seed(args.seed)
    out = model.generate(prompt, args.tokens, temperature=args.temperature, top_k=args.top_k, generator=generator)
    print(tokenizer.decode(out[0].tolist()))
