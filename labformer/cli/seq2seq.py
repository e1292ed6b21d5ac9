"""``labformer train seq2seq`` and ``labformer translate``: the encoder–decoder on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labformer.cli.flags import DEVICE_HELP, RUNTIME, SHIPPED_HELP, add_config_flags, picked, run_argument
from labformer.translate import UNSURE_BELOW

__all__ = ["add_seq2seq_parser", "evaluate_pairs"]

LENGTHS = ("max_source", "max_target")


def add_seq2seq_parser(models: argparse._SubParsersAction, commands: argparse._SubParsersAction) -> None:
    """``labformer train seq2seq`` (flags from Seq2SeqConfig and TranslationConfig) and ``labformer translate``."""
    from labformer.models.seq2seq import Seq2SeqConfig
    from labformer.training.recipes import SEQ2SEQ_PRESETS as PRESETS
    from labformer.training.recipes import TranslationConfig

    parser = models.add_parser(
        "seq2seq",
        help="train an encoder-decoder: dates written many ways -> ISO (or --task reverse, or your own pairs)",
        description="Train a character encoder-decoder (self- and cross-attention) on pairs generated on the spot "
        "or read from --data-file. Every setting overrides the preset's value.",
    )
    parser.add_argument(
        "--preset", choices=list(PRESETS),
        help=f"{' | '.join(PRESETS)} (default: the --task's own, else dates)",
    )  # fmt: skip
    parser.add_argument("--out", help="run directory (default: runs/<timestamp>-seq2seq)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model (Seq2SeqConfig; the vocabularies come from the training pairs)")
    presets = {name: values[0] for name, values in PRESETS.items()}
    model_flags = add_config_flags(model, Seq2SeqConfig, presets, skip=("source_vocab", "target_vocab", *LENGTHS))
    for flag, help_line in (
        ("--max-source", "longest source in characters (default: the longest of the data)"),
        ("--max-target", "longest target in characters, its end token included (default: the data's longest + 1)"),
    ):
        model.add_argument(flag, type=int, metavar=flag[2:].replace("-", "_").upper(), help=help_line)
    train = parser.add_argument_group("training (TranslationConfig)")
    train_flags = add_config_flags(train, TranslationConfig, {name: values[1] for name, values in PRESETS.items()})
    parser.set_defaults(handler=_train, model_flags=[*model_flags, *LENGTHS], train_flags=train_flags)

    translate = commands.add_parser(
        "translate",
        help="write the output of an encoder-decoder run for each text",
        description="Each TEXT through a `labformer train seq2seq` run: greedy decoding, or beam search with "
        "--beam K; one output per line, followed in brackets by what makes it doubtful: an answer of the dates task "
        "that is not a real date or whose year lies outside those learnt, or a character the model gave a "
        f'probability under {UNSURE_BELOW}. Try the shipped model: `labformer translate dates "3 mars 2021"`.',
    )
    translate.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_argument,
        help="a `labformer train seq2seq` run directory, " + SHIPPED_HELP.format("dates"),
    )  # fmt: skip
    translate.add_argument("texts", nargs="+", metavar="TEXT", help='inputs, e.g. "3 mars 2021" "March 3rd, 2021"')
    translate.add_argument(
        "--beam", type=int, default=1, help="hypotheses kept by beam search (default: 1, greedy decoding)"
    )
    translate.add_argument(
        "--attention", metavar="PNG", help="also save the cross-attention figure of the first TEXT as this PNG file"
    )
    translate.add_argument("--json", action="store_true", help="one JSON object per line")
    translate.add_argument("--device", default="auto", help=DEVICE_HELP)
    translate.set_defaults(handler=_translate)


def _train(args: argparse.Namespace) -> None:
    from labformer.plots import Seq2SeqFigures
    from labformer.training.recipes import SEQ2SEQ_PRESETS, TranslationConfig, seq2seq_configs
    from labformer.training.translation import train_seq2seq

    shown = dict(progress=not args.no_progress, callbacks=[Seq2SeqFigures()])
    if args.resume:
        train_seq2seq({}, TranslationConfig(**picked(args, RUNTIME)), resume=args.resume, **shown)
        return
    preset = args.preset or (args.task if args.task in SEQ2SEQ_PRESETS else "dates")
    model_values, config = seq2seq_configs(preset, picked(args, args.model_flags), picked(args, args.train_flags))
    train_seq2seq(model_values, config, out=args.out, preset=preset, **shown)


def _translate(args: argparse.Namespace) -> int:
    from labformer.plots import plot_cross_attention, save_figure
    from labformer.training.translation import open_translation_run
    from labformer.translate import attention_examples, reading

    if args.beam < 1:
        raise ValueError(f"--beam must be a positive number of hypotheses; got {args.beam}")
    model, data = open_translation_run(args.run_dir, args.device)
    longest = max(args.texts, key=len)
    if len(longest) > model.config.max_source:
        raise ValueError(
            f"TEXT {longest!r} has {len(longest)} characters; this model reads at most {model.config.max_source}"
        )
    task = model.run_info["train"].get("task")
    examples = attention_examples(model, data, args.texts, beam=args.beam)
    flagged = 0
    for example in examples:
        answer = reading(*example, task)
        unknown = data.source_vocab.unknown(answer.source)
        warnings = answer.warnings() + ([f"not in the vocabulary: {''.join(unknown)}"] if unknown else [])
        flagged += bool(warnings)
        if args.json:
            calendar = answer.calendar
            print(json.dumps({
                "text": answer.source, "output": answer.output, "unknown_characters": unknown,
                "least_probability": round(answer.least_probability, 6), "unsure": answer.unsure,
                "unsure_below": UNSURE_BELOW, "real_date": None if calendar is None else calendar.real,
                "warnings": warnings,
            }, ensure_ascii=False))  # fmt: skip
        else:
            print(f"{answer.source} -> {answer.output}" + (f"   ({'; '.join(warnings)})" if warnings else ""))
    if args.attention:
        save_figure(plot_cross_attention(examples[:1]), Path(args.attention))
        if not args.json:
            print(f"cross-attention of {args.texts[0]!r} -> {args.attention}")
    return 0


def evaluate_pairs(args: argparse.Namespace) -> None:
    """``labformer evaluate SEQ2SEQ_RUN``: exact match and character accuracy on the held-out test split."""
    from labformer.training.translation import open_translation_run, score_split
    from labformer.translate import translate_texts

    model, data = open_translation_run(args.run_dir, args.device, splits=True)
    test = data.splits["test"]
    scores = score_split(test, translate_texts(model, data, [s for s, _, _ in test]))
    if args.json:
        keys = ("exact", "characters", "by_language", "by_group")
        print(json.dumps({"test_count": len(test), **{k: getattr(scores, k) for k in keys}}, ensure_ascii=False))
        return
    print(f"test exact match {scores.exact:.2%}, characters {scores.characters:.2%} over {len(test):,} held-out pairs")
    for language, values in scores.by_language.items():
        print(f"  {language:8s} {values['exact']:.2%} exact ({values['count']:,.0f} pairs)")
