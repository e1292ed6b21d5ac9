"""labformer.cli.flags: every setting is declared once, as a dataclass field, and its flag is generated."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Literal

import pytest

from labformer.cli import main
from labformer.cli.flags import add_config_flags, picked
from labformer.config import setting
from labformer.models.gpt import GPTConfig
from labformer.models.vit import ViTConfig
from labformer.training import classify
from labformer.training.classify import ClassifyConfig
from labformer.training.language import LanguageConfig


@dataclasses.dataclass
class Toy:
    count: int = setting(3, "how many")
    rate: float | None = setting(None, "how fast")
    mode: Literal["a", "b"] = setting("a", "which")
    fast: bool = setting(False, "go fast")
    tied: bool = setting(True, "share weights")


def parse(*argv: str) -> tuple[argparse.Namespace, list[str], str]:
    parser = argparse.ArgumentParser(prog="toy")
    names = add_config_flags(parser, Toy, {"big": {"count": 9}})
    return parser.parse_args(list(argv)), names, parser.format_help()


def test_flags_are_generated_from_the_fields():
    args, names, help_text = parse("--count", "0", "--rate", "0.5", "--mode", "b", "--fast", "--no-tied")
    assert names == ["count", "rate", "mode", "fast", "tied"]
    assert picked(args, names) == {"count": 0, "rate": 0.5, "mode": "b", "fast": True, "tied": False}
    assert picked(parse()[0], names) == {}  # nothing given: the preset's values stand
    # each switch goes both ways, whichever way a preset set it
    assert picked(parse("--no-fast", "--tied")[0], names) == {"fast": False, "tied": True}
    assert "how many (default 3; preset big 9)" in " ".join(help_text.split())
    with pytest.raises(SystemExit):
        parse("--mode", "c")


@pytest.mark.parametrize("config_class", [ViTConfig, GPTConfig, ClassifyConfig, LanguageConfig])
def test_every_setting_has_a_help_line(config_class):
    for spec in dataclasses.fields(config_class):
        assert spec.metadata.get("help"), f"{config_class.__name__}.{spec.name} has no help line"


def test_help_shows_defaults_and_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    heads = "(default 8; preset fast 4, best 4, cifar 4, lab-cifar 8, lab 8)"
    assert f"--num-heads NUM_HEADS attention heads; must divide dim {heads}" in text
    epochs = "(default 10; preset fast 8, best 50, cifar 8, lab-cifar 100, lab 25)"
    assert f"--epochs EPOCHS passes over the training set {epochs}" in text
    assert "10 % shift, 10 % zoom at 1" in text  # a % in a help line is shown, not formatted
    with pytest.raises(SystemExit):
        main(["train", "gpt", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    rope = "rope = rotary, on queries and keys (beyond the lab) (default learned; preset cpu rope)"
    assert f"--position {{learned,sincos,rope}} position encoding of the tokens; {rope}" in text
    assert "--tie-weights, --no-tie-weights the head shares the token embedding matrix (default True) " in text
    assert "--iters ITERS optimisation steps (default 3000; preset cpu 1800, lab 5000)" in text


def test_an_unknown_key_in_a_saved_config_is_a_clear_error(tmp_path, capsys):
    model_config, _ = classify.preset_configs("fast", "mnist", {}, {})
    run = tmp_path / "run"
    run.mkdir()
    train = {**dataclasses.asdict(ClassifyConfig()), "colour": True}
    (run / "config.json").write_text(json.dumps({"kind": "vit", "model": model_config.to_dict(), "train": train}))
    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown ClassifyConfig keys ['colour']" in err[0]
