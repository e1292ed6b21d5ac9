"""labformer.cli.flags: every setting is declared once, as a dataclass field, and its flag is generated."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Literal

import pytest

from labformer.cli import as_flags, build_parser, main
from labformer.cli.flags import add_config_flags, picked, shown_default
from labformer.config import setting
from labformer.models.gpt import GPTConfig
from labformer.models.seq2seq import Seq2SeqConfig
from labformer.models.vit import ViTConfig
from labformer.training import classify
from labformer.training.classify import ClassifyConfig
from labformer.training.language import LanguageConfig
from labformer.training.recipes import (
    GPT_PRESETS,
    SEQ2SEQ_PRESETS,
    VIT_PRESETS,
    TranslationConfig,
    gpt_configs,
    seq2seq_configs,
    vit_configs,
)  # fmt: skip


@dataclasses.dataclass
class Toy:
    count: int = setting(3, "how many")
    rate: float | None = setting(None, "how fast")
    mode: Literal["a", "b"] = setting("a", "which")
    fast: bool = setting(False, "go fast")
    tied: bool = setting(True, "share weights")


def parse(*argv: str) -> tuple[argparse.Namespace, list[str], str]:
    parser = argparse.ArgumentParser(prog="toy")
    names = add_config_flags(parser, Toy, {"small": {}, "big": {"count": 9}})
    return parser.parse_args(list(argv)), names, parser.format_help()


def test_flags_are_generated_from_the_fields():
    args, names, help_text = parse("--count", "0", "--rate", "0.5", "--mode", "b", "--fast", "--no-tied")
    assert names == ["count", "rate", "mode", "fast", "tied"]
    assert picked(args, names) == {"count": 0, "rate": 0.5, "mode": "b", "fast": True, "tied": False}
    assert picked(parse()[0], names) == {}  # nothing given: the preset's values stand
    # each switch goes both ways, whichever way a preset set it
    assert picked(parse("--no-fast", "--tied")[0], names) == {"fast": False, "tied": True}
    assert "how many (small: 3 · big: 9)" in " ".join(help_text.split())  # the default preset first
    assert "which (default: a)" in " ".join(help_text.split())  # the same in every preset: said once
    with pytest.raises(SystemExit):
        parse("--mode", "c")


@pytest.mark.parametrize(
    "config_class", [ViTConfig, GPTConfig, ClassifyConfig, LanguageConfig, Seq2SeqConfig, TranslationConfig]
)
def test_every_setting_has_a_help_line(config_class):
    for spec in dataclasses.fields(config_class):
        assert spec.metadata.get("help"), f"{config_class.__name__}.{spec.name} has no help line"


def test_help_shows_defaults_and_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    heads = "(fast: 4 · best: 4 · cifar: 4 · lab-cifar: 12 · lab: 8)"
    assert f"--num-heads NUM_HEADS attention heads; must divide dim unless head_dim is given {heads}" in text
    epochs = "(fast: 8 · best: 50 · cifar: 6 · lab-cifar: 100 · lab: 25)"
    assert f"--epochs EPOCHS passes over the training set {epochs}" in text
    assert "10 % shift, 10 % zoom at 1" in text  # a % in a help line is shown, not formatted
    with pytest.raises(SystemExit):
        main(["train", "gpt", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    rope = "rope = rotary, on queries and keys (beyond the lab) (cpu: rope · lab: learned)"
    assert f"--position {{learned,sincos,rope}} position encoding of the tokens; {rope}" in text
    assert "--tie-weights, --no-tie-weights the head shares the token embedding matrix (default: True) " in text
    assert "--iters ITERS optimisation steps (cpu: 1800 · lab: 5000)" in text


def test_an_unknown_key_in_a_saved_config_is_a_clear_error(tmp_path, capsys):
    model_config, _ = classify.preset_configs("fast", "mnist", {}, {})
    run = tmp_path / "run"
    run.mkdir()
    train = {**dataclasses.asdict(ClassifyConfig()), "colour": True}
    (run / "config.json").write_text(json.dumps({"kind": "vit", "model": model_config.to_dict(), "train": train}))
    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown ClassifyConfig keys ['colour']" in err[0]


def shown_first(text: str) -> str:
    """The value a run without the flag gets, as the help shows it: "(default: X)" or the first preset's."""
    return text.strip(" ()").split(" · ")[0].split(": ", 1)[1]


@pytest.mark.parametrize("kind", ["vit", "gpt", "seq2seq"])
def test_the_shown_default_is_what_the_default_run_uses(kind):
    """For every generated flag, the value its help shows first is the one `labformer train <kind>` resolves."""
    if kind == "vit":
        model, train = vit_configs("fast", "mnist", {}, {})
        pairs = [(ViTConfig, VIT_PRESETS, 0, model.to_dict())]
        pairs.append((ClassifyConfig, VIT_PRESETS, 1, dataclasses.asdict(train)))
    elif kind == "gpt":
        model_values, train = gpt_configs("cpu", {}, {})
        pairs = [(GPTConfig, GPT_PRESETS, 0, model_values)]
        pairs.append((LanguageConfig, GPT_PRESETS, 1, dataclasses.asdict(train)))
    else:
        model_values, train = seq2seq_configs("dates", {}, {})
        model_values = {**Seq2SeqConfig(**model_values).to_dict(), **model_values}
        for name in ("source_vocab", "target_vocab", "max_source", "max_target"):
            model_values.pop(name)  # set by the data
        pairs = [(Seq2SeqConfig, SEQ2SEQ_PRESETS, 0, model_values)]
        pairs.append((TranslationConfig, SEQ2SEQ_PRESETS, 1, dataclasses.asdict(train)))
    checked = 0
    for config_class, presets, part, resolved in pairs:
        for spec in dataclasses.fields(config_class):
            if spec.name not in resolved:
                continue  # set by the data (image shape, vocabulary)
            text = shown_default(spec, {name: values[part] for name, values in presets.items()})
            if text:
                assert shown_first(text) == str(resolved[spec.name]), (spec.name, text)
                checked += 1
            else:  # nothing shown: the value is None and the help line says what happens then
                assert resolved[spec.name] is None and "default" in spec.metadata["help"]
    assert checked > 15


@pytest.mark.parametrize("command", ["train vit", "train gpt", "train seq2seq", "generate", "translate", "evaluate",
                                     "predict", "lab", "export", "serve", "doctor"])  # fmt: skip
def test_every_flag_and_argument_has_help(command):
    parser = build_parser()
    for word in command.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help and action.help.strip(), f"{command}: {action.option_strings or action.dest} has no help"
        assert action.metavar is None or action.metavar.isupper(), f"{command}: metavar {action.metavar}"


def test_errors_name_the_flags_the_user_typed(capsys):
    parser = build_parser()
    assert as_flags("top_k must be positive; got 0", parser) == "--top-k must be positive; got 0"
    patch = as_flags("patch_size (5) must divide image_size (28)", parser)
    assert patch == "--patch-size (5) must divide --image-size (28)"
    assert as_flags("--seconds must be in (0, 600]", parser) == "--seconds must be in (0, 600]"  # already a flag
    assert as_flags("the text file is empty", parser) == "the text file is empty"  # "text" is not its subject here
    assert main(["train", "gpt", "--iters", "0"]) == 2
    assert capsys.readouterr().err.strip() == "labformer: error: --iters must be a positive integer; got 0"
