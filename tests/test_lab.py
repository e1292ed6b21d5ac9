"""The lab's experiments against the lab's values (LAB.md) or independent computations; the report."""

from __future__ import annotations

import math
from base64 import b64decode
from html.parser import HTMLParser
from io import BytesIO

import pytest
import torch
from PIL import Image

from labformer import lab
from labformer.cli import main
from labformer.lab.report import write_report


@pytest.fixture(scope="module")
def results():
    return {name: lab.run(name) for name in lab.EXPERIMENTS}


def printed_precision(value) -> float:
    """Half a unit in the last digit the lab printed (the largest over a list)."""
    if isinstance(value, list):
        return max(printed_precision(v) for v in value)
    text = repr(value)
    if "e" in text:
        return 0.5 * 10 ** int(text.split("e")[1])
    return 0.5 * 10 ** -len(text.split(".")[1]) if "." in text else 0.5


def close(a, b, tol):
    return torch.allclose(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), atol=tol, rtol=0)


def test_every_lab_value_is_reproduced(results):
    checked = 0
    for result in results.values():
        for label, expected in result.lab_values.items():
            tol = printed_precision(expected) + 1e-9
            assert close(result.numbers[label], expected, tol), (result.name, label, result.numbers[label], expected)
            checked += 1
    assert checked >= 9


def test_permutation_numbers(results):
    numbers = list(results["permutation"].numbers.values())
    assert numbers[0] < 1e-6 and numbers[1] < 1e-6  # equivariance / invariance without positions
    assert numbers[2] > 1e-2 and numbers[3] > 1e-2  # broken by positions


def test_scaling_entropy(results):
    numbers = results["scaling"].numbers
    assert numbers["entropy raw at d = 1024"] < 0.5 < numbers["entropy scaled at d = 1024"]
    assert numbers["entropy scaled at d = 1024"] < math.log(32)


def test_message_passing_is_causal(results):
    assert results["message_passing"].numbers["edges pointing to the future"] == 0


def test_receptive_field_grows_by_two_for_convolutions(results):
    numbers = results["receptive_field"].numbers
    assert numbers["inputs reaching output 8, convolution"] == [3, 5, 7]
    assert numbers["inputs reaching output 8, attention"] == [16, 16, 16]


def test_heads_specialise(results):
    numbers = results["heads_as_channels"].numbers
    assert numbers["task accuracy"] > 0.9
    offsets = numbers["mean look-back per head (tokens)"]
    assert min(abs(o - 1) for o in offsets) < 0.5 and min(abs(o - 3) for o in offsets) < 0.5


def test_norm_statistics(results):
    numbers = results["batchnorm_vs_layernorm"].numbers
    assert numbers["BatchNorm: max |mean per feature|"] < 1e-5
    assert numbers["LayerNorm: max |mean per sample|"] < 1e-5
    assert abs(numbers["BatchNorm: mean variance per feature"] - 1) < 1e-2  # var / (var + eps) per feature
    assert abs(numbers["LayerNorm: mean variance per sample"] - 1) < 1e-3
    assert numbers["BatchNorm: max |mean per sample|"] > 0.05 and numbers["LayerNorm: max |mean per feature|"] > 0.05
    assert numbers["BatchNorm: max |train - eval| output"] > 0.1
    assert numbers["LayerNorm: max |train - eval| output"] == 0


def test_residuals_carry_the_gradient(results):
    numbers = results["pre_vs_post_norm"].numbers
    with_res = numbers["pre-norm, 48 layers: first/last layer gradient"]
    without = numbers["pre-norm no residual, 48 layers: first/last layer gradient"]
    assert without < with_res / 10


def test_self_vs_cross_shapes(results):
    numbers = results["self_vs_cross"].numbers
    assert numbers["self-attention weights shape"] == [2, 2, 5, 5]
    assert numbers["cross-attention weights shape"] == [2, 2, 5, 7]


def test_self_vs_cross_measures_the_trained_models_alignment(results):
    """The month digits of the shipped dates model's answers read the month word: in some layer most of
    their cross-attention is on it, more than twice what an even spread would put there, and every example
    is written right."""
    import torch

    from labformer.lab.attention_basics import MONTH_EXAMPLES
    from labformer.runs import PRETRAINED
    from labformer.training.translation import open_translation_run
    from labformer.translate import attention_examples

    numbers = results["self_vs_cross"].numbers
    shares = [v for k, v in numbers.items() if k.endswith("month digits' cross-attention on the month word")]
    even = numbers["the same share for attention spread evenly"]
    assert len(shares) == 2 and max(shares) > 0.75 and max(shares) > 2 * even
    assert numbers["examples written right"] == f"{len(MONTH_EXAMPLES)} of {len(MONTH_EXAMPLES)}"
    # Recomputed by hand for the first example: "mercredi 3 mars 2021", the word "mars" at 11–14.
    model, data = open_translation_run(PRETRAINED / "dates")
    ((source, written, attention),) = attention_examples(model, data, [MONTH_EXAMPLES[0][0]])
    assert written == "2021-03-03" and source[11:15] == "mars"
    assert attention.cross.shape[:2] == (2, model.config.num_heads)
    by_hand = attention.cross.mean(1)[:, 5:7, 11:15].sum(-1).mean(-1)
    assert torch.all(by_hand >= 0) and by_hand.max() > 2 * 4 / len(source)


def test_lab_routes_each_run_to_the_experiment_that_reads_its_kind(tmp_path, capsys):
    from labformer.runs import PRETRAINED

    assert lab.run_arguments("self_vs_cross", [str(PRETRAINED / "digits"), str(PRETRAINED / "dates")]) == {
        "run_dir": str(PRETRAINED / "dates")
    }
    assert lab.run_arguments("heads_as_channels", [str(PRETRAINED / "dates")]) == {}
    assert main(["lab", "self_vs_cross", "--run", str(PRETRAINED / "text"), "--out", str(tmp_path)]) == 2
    assert "holds a gpt run; self_vs_cross reads seq2seq runs" in capsys.readouterr().err
    assert main(["lab", "scaling", "--run", str(PRETRAINED / "dates")]) == 2
    assert "the experiment scaling does not use a run" in capsys.readouterr().err


def test_report_and_cli(tmp_path, capsys):
    results = write_report(tmp_path)
    for result in results:
        png = tmp_path / f"{result.name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.sections, self.saves = [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs)
            if tag == "a" and "download" in attrs:
                self.saves.append(attrs)
            if tag == "section":
                self.sections.append(attrs["id"])

    parser = Collect()
    parser.feed((tmp_path / "report.html").read_text())
    assert parser.sections == list(lab.EXPERIMENTS)
    assert all(image["src"].startswith("data:image/png;base64,") for image in parser.images)
    assert [image["alt"] for image in parser.images] == list(lab.EXPERIMENTS)
    # each figure's "Save PNG" link is its own PNG file beside the report, the same picture as the page's
    assert [save["href"] for save in parser.saves] == [f"{name}.png" for name in lab.EXPERIMENTS]
    for save, image in zip(parser.saves, parser.images):
        with (
            Image.open(tmp_path / save["href"]) as saved,
            Image.open(BytesIO(b64decode(image["src"].split(",")[1]))) as shown,
        ):
            assert saved.format == "PNG" and abs(saved.width - shown.width) <= 0.15 * shown.width
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"({name}.png)" in markdown for name in lab.EXPERIMENTS)
    assert "259.66" in markdown
    assert main(["lab", "list"]) == 0
    assert "single_query" in capsys.readouterr().out
    assert main(["lab", "scaling", "--out", str(tmp_path / "one")]) == 0
    assert "(lab: 259.66)" in capsys.readouterr().out
    assert (tmp_path / "one" / "scaling.png").exists()
    assert main(["lab", "nonsense"]) == 2
    assert "unknown experiment 'nonsense'" in capsys.readouterr().err
