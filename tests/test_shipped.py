"""The models shipped with labformer by name: `predict digits`, `translate dates`, `generate text` and
`labformer.load("text")` work from any folder with no training; a run folder of that name comes first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import labformer
from labformer.cli import main
from labformer.data import load_mnist
from labformer.models.gpt import GPT
from labformer.models.seq2seq import Seq2Seq
from labformer.models.vit import ViT
from labformer.runs import PRETRAINED, run_path
from labformer.serve.models import find_runs


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """An empty working directory: nothing of the checkout can be found by a relative path."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("name", "model_class"), [("digits", ViT), ("text", GPT), ("dates", Seq2Seq)])
def test_load_takes_a_shipped_name(elsewhere, name, model_class):
    model = labformer.load(name)
    assert isinstance(model, model_class) and not model.training
    by_path = labformer.load(PRETRAINED / name)
    for (key, value), (_, expected) in zip(model.state_dict().items(), by_path.state_dict().items()):
        assert value.equal(expected), key


def test_predict_digits_reads_mnist_test_digits(elsewhere, capsys):
    test = load_mnist().test
    paths = []
    for i in range(8):
        path = elsewhere / f"digit{i}.png"
        Image.fromarray((255 - test.images[i, 0].numpy()).astype("uint8")).save(path)  # dark ink on paper
        paths.append(str(path.name))
    code, out, err = run(capsys, "predict", "digits", *paths)
    assert code == 0, err
    predicted = [int(line.split(": ")[1].split()[0]) for line in out.strip().splitlines()]
    assert predicted == [int(label) for label in test.labels[:8]]


def test_translate_dates_writes_the_iso_date(elsewhere, capsys):
    code, out, err = run(capsys, "translate", "dates", "3 mars 2021", "March 4th, 2021")
    assert code == 0, err
    assert out.splitlines() == ["3 mars 2021 -> 2021-03-03", "March 4th, 2021 -> 2021-03-04"]


def test_generate_text_is_the_shipped_gpt(elsewhere, capsys):
    by_name = run(capsys, "generate", "text", "--prompt", "ROMEO:", "--tokens", "40", "--device", "cpu")
    by_path = run(capsys, "generate", str(PRETRAINED / "text"), "--prompt", "ROMEO:", "--tokens", "40",
                  "--device", "cpu")  # fmt: skip
    assert by_name[0] == 0, by_name[2]
    assert by_name[1] == by_path[1] and by_name[1].startswith("ROMEO:") and len(by_name[1].rstrip("\n")) == 46


def test_a_run_folder_of_that_name_comes_first(elsewhere, capsys):
    shutil.copytree(PRETRAINED / "text", elsewhere / "digits")  # a GPT run that happens to be called digits
    assert run_path("digits") == Path("digits")
    code, out, err = run(capsys, "generate", "digits", "--prompt", "ROMEO:", "--tokens", "5", "--device", "cpu")
    assert code == 0 and out.startswith("ROMEO:"), err
    assert isinstance(labformer.load("digits"), GPT)
    code, out, err = run(capsys, "predict", "digits", "x.png")
    assert code == 2 and "holds a gpt model" in err


def test_a_folder_of_that_name_holding_no_run_does_not_hide_the_shipped_model(elsewhere, capsys):
    (elsewhere / "digits").mkdir()  # a folder of pictures, say
    Image.new("L", (28, 28), 255).save(elsewhere / "digits" / "blank.png")
    assert run_path("digits") == PRETRAINED / "digits"
    code, out, err = run(capsys, "predict", "digits", "digits")
    assert code == 0, err
    assert out.startswith("digits/blank.png: ")


def test_an_unknown_name_says_which_models_are_shipped(elsewhere, capsys):
    code, out, err = run(capsys, "translate", "numbers", "3 mars 2021")
    assert code == 2 and "numbers does not exist" in err and "digits, text, dates" in err
    with pytest.raises(FileNotFoundError, match="the shipped models are named digits, text, dates"):
        labformer.load("numbers")


def test_serve_takes_shipped_names(elsewhere):
    chosen = find_runs(["digits", "dates"], elsewhere / "runs")
    assert chosen["vit"] == PRETRAINED / "digits" and chosen["seq2seq"] == PRETRAINED / "dates"
