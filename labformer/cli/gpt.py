"""``labformer train gpt`` and ``labformer generate``: the character GPT of Part 5 on the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from labformer.cli.flags import DEVICE_HELP, RUNTIME, SHIPPED_HELP, add_config_flags, picked, run_argument

__all__ = ["add_gpt_parser"]


def add_gpt_parser(models: argparse._SubParsersAction, commands: argparse._SubParsersAction) -> None:
    """``labformer train gpt`` (flags generated from GPTConfig and LanguageConfig) and ``labformer generate``."""
    from labformer.models.gpt import GPTConfig
    from labformer.training.recipes import GPT_PRESETS as PRESETS
    from labformer.training.recipes import LanguageConfig

    parser = models.add_parser(
        "gpt",
        help="train the character GPT on Tiny Shakespeare (or --text FILE)",
        description="Train a character-level GPT. Every setting overrides the preset's value.",
    )
    parser.add_argument("--preset", default="cpu", choices=list(PRESETS), help=f"{' | '.join(PRESETS)} (default: cpu)")
    parser.add_argument("--out", help="run directory (default: runs/<timestamp>-gpt)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model (GPTConfig; the vocabulary comes from the corpus)")
    presets = {name: values[0] for name, values in PRESETS.items()}
    model_flags = add_config_flags(model, GPTConfig, presets, skip=("vocab_size",))
    model.add_argument("--heads", dest="num_heads", type=int, help="alias of --num-heads")
    train = parser.add_argument_group("training (LanguageConfig)")
    train_flags = add_config_flags(train, LanguageConfig, {name: values[1] for name, values in PRESETS.items()})
    parser.set_defaults(handler=_train_gpt, model_flags=model_flags, train_flags=train_flags)

    generate = commands.add_parser(
        "generate",
        help="sample text from a trained GPT run",
        description="Continue a prompt character by character with a trained GPT run (key/value cache). The text "
        "goes to stdout, its speed to stderr; the same --seed gives the same text. Try the shipped model: "
        "`labformer generate text --prompt ROMEO:`.",
    )
    generate.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_argument,
        help="a `labformer train gpt` run directory, " + SHIPPED_HELP.format("text"),
    )  # fmt: skip
    generate.add_argument(
        "--prompt", action="append", help="text to continue (default: a newline); repeat it to sample several "
        "prompts of different lengths at once (one left-padded batch)",
    )  # fmt: skip
    generate.add_argument("--tokens", type=int, default=500, help="characters to generate (default: 500)")
    generate.add_argument(
        "--temperature", type=float, default=1.0,
        help="divides the logits: below 1 safer, above 1 more surprising (default: 1.0)",
    )  # fmt: skip
    generate.add_argument("--top-k", type=int, help="sample among the K likeliest characters only (default: all)")
    generate.add_argument(
        "--seed", type=int, default=1, help="seeds the sampling: the same seed, the same text (default: 1)"
    )
    generate.add_argument("--device", default="auto", help=DEVICE_HELP)
    generate.set_defaults(handler=_generate)


def _train_gpt(args: argparse.Namespace) -> None:
    from labformer.plots import CurveFigure
    from labformer.training.language import train_language_model
    from labformer.training.recipes import LanguageConfig, gpt_configs

    shown = dict(progress=not args.no_progress, callbacks=[CurveFigure()])
    if args.resume:
        train_language_model({}, LanguageConfig(**picked(args, RUNTIME)), resume=args.resume, **shown)
        return
    model_values, config = gpt_configs(args.preset, picked(args, args.model_flags), picked(args, args.train_flags))
    train_language_model(model_values, config, out=args.out, preset=args.preset, **shown)


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
    texts = args.prompt or ["\n"]
    if not all(texts):
        raise ValueError("--prompt must not be empty")
    device = next(model.parameters()).device
    prompts = [tokenizer.encode(text).to(device) for text in texts]
    generator = torch.Generator(device).manual_seed(args.seed)
    sampling = dict(temperature=args.temperature, top_k=args.top_k, generator=generator)
    started = time.perf_counter()
    if len(prompts) == 1:
        rows = [model.generate(prompts[0][None], args.tokens, **sampling)[0]]
    else:
        rows = model.generate_batch(prompts, args.tokens, **sampling)
    seconds = time.perf_counter() - started
    for i, row in enumerate(rows):
        if len(rows) > 1:
            print(f"=== sample {i + 1} of {len(rows)} ===")
        print(tokenizer.decode(row.tolist()))
    # On stderr, so that stdout is the text alone (for pipes and files).
    tokens = args.tokens * len(rows)
    print(f"{tokens} tokens in {seconds:.2f} s: {tokens / seconds:,.0f} tokens/s", file=sys.stderr)


def evaluate_text(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """``labformer evaluate GPT_RUN [--text FILE]``: loss per character on any UTF-8 text (default: the
    validation split of the run's corpus). Characters outside the vocabulary are skipped and counted."""
    import json
    import math
    from collections import Counter

    from labformer.data.text import CharTokenizer, load_text, read_text
    from labformer.io import read_json
    from labformer.runs import VOCAB, read_run_config

    tokenizer = CharTokenizer(read_json(Path(args.run_dir) / VOCAB, "vocabulary"))
    unknown: Counter[str] = Counter()
    if args.text:
        text = read_text(Path(args.text))
        unknown = Counter(c for c in text if c not in tokenizer.index)
        ids = tokenizer.encode("".join(c for c in text if c in tokenizer.index))
        source = args.text
    else:
        train = read_run_config(args.run_dir)["train"]
        ids = load_text(train.get("text"), block_size=model.config.block_size, tokenizer=tokenizer).val
        source = f"the validation split of {train.get('text') or 'Tiny Shakespeare'}"
    if ids.numel() < 2:
        raise ValueError(f"{source} has fewer than 2 characters this model knows")
    total, count = model.sequence_loss(ids)
    loss = total / count
    result = {
        "text": source,
        "loss": loss,
        "bits_per_character": loss / math.log(2),
        "perplexity": math.exp(loss),
        "characters": count,
        "outside_vocabulary": sum(unknown.values()),
        "unknown_characters": dict(unknown.most_common()),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"loss {loss:.4f} nats/character ({result['bits_per_character']:.3f} bits, perplexity "
        f"{result['perplexity']:.2f}) over {count:,} characters of {source}"
    )
    if unknown:
        shown = ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common(8))
        print(f"{sum(unknown.values()):,} characters outside the model's vocabulary were skipped: {shown}")
