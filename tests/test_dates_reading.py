"""How far to trust a dates answer: the calendar check against the standard library's ``datetime``, the
unsure flag from the model's own probabilities, and both through `labformer translate` and the API."""

from __future__ import annotations

import datetime
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labformer.cli import main
from labformer.data.dates import FIRST_YEAR, LAST_YEAR, check_calendar
from labformer.data.pairs import BOS, EOS
from labformer.models.seq2seq import Attention
from labformer.runs import PRETRAINED
from labformer.training.translation import open_translation_run
from labformer.translate import UNSURE_BELOW, Reading, read_texts, reading


@pytest.fixture(scope="module")
def client(served):
    return served[0]


def real_by_datetime(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10 and text[4] == text[7] == "-"  # fromisoformat also reads "20210203"


@given(st.integers(0, 9999), st.integers(0, 19), st.integers(0, 39))
@settings(max_examples=400, deadline=None)
def test_the_calendar_check_agrees_with_datetime(year, month, day):
    text = f"{year:04d}-{month:02d}-{day:02d}"
    check = check_calendar(text)
    assert check.real == real_by_datetime(text)
    assert (check.describe() == "") == (check.real and FIRST_YEAR <= year <= LAST_YEAR)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("2021-02-31", "not a date: February 2021 has 28 days"),
        ("2024-02-30", "not a date: February 2024 has 29 days"),
        ("1900-02-29", "not a date: February 1900 has 28 days"),
        ("2021-13-01", "not a date: there is no month 13"),
        ("0707-07-07", "the year 707 lies outside 1000-2999, the years the model learnt"),
        ("2021-3-4", "not a date: '2021-3-4' is not written YYYY-MM-DD"),
        ("2000-02-29", ""),
    ],
)
def test_the_calendar_check_says_what_is_wrong(text, said):
    assert check_calendar(text).describe() == said


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_an_answer_is_unsure_exactly_when_a_character_is_under_the_threshold(probabilities):
    answer = Reading("x", "2021-03-03", tuple(probabilities), check_calendar("2021-03-03"))
    assert answer.unsure == any(p < UNSURE_BELOW for p in probabilities)
    assert bool(answer.warnings()) == answer.unsure


def test_the_reading_of_the_shipped_model_is_its_own_probabilities():
    model, data = open_translation_run(PRETRAINED / "dates")
    (answer,) = read_texts(model, data, ["3 mars 2021"], task="dates")
    source = data.source_vocab.encode("3 mars 2021")
    target = torch.tensor([BOS, *data.target_vocab.encode("2021-03-03").tolist()])
    with torch.no_grad():
        logits = model(source[None], target[None])[0]
    expected = logits.softmax(-1).gather(-1, torch.tensor([*target[1:].tolist(), EOS])[:, None])[:, 0]
    assert answer.output == "2021-03-03" and answer.calendar.real and not answer.warnings()
    torch.testing.assert_close(torch.tensor(answer.probabilities), expected, atol=1e-6, rtol=1e-5)
    other = reading("a", "b", Attention(*(torch.empty(0),) * 3, torch.tensor([0.9, 0.2])), task="reverse")
    assert other.calendar is None and other.unsure


@pytest.mark.parametrize(
    ("text", "flagged"),
    [("31 février 2021", "not a date: February 2021 has 28 days"), ("30 février 2024", "February 2024 has 29 days")],
)
def test_translate_says_when_an_answer_is_not_a_date(capsys, text, flagged):
    assert main(["translate", "dates", text, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["real_date"] is False and any(flagged in warning for warning in answer["warnings"])
    assert main(["translate", "dates", text]) == 0
    assert flagged in capsys.readouterr().out


def test_text_that_is_no_date_is_flagged(capsys):
    assert main(["translate", "dates", "hello world", "bonjour", "--json"]) == 0
    for line in capsys.readouterr().out.splitlines():
        answer = json.loads(line)
        assert answer["warnings"], answer  # not a date, outside the years learnt, or unsure


def test_the_api_reports_the_checks(client):
    answer = client.post("/api/seq2seq/translate", json={"text": "31 février 2021"}).json()
    assert answer["calendar"] == {"text": "2021-02-31", "problem": "day", "year": 2021, "month": 2, "days": 28,
                                  "outside": False, "real": False}  # fmt: skip
    assert answer["least_probability"] == pytest.approx(min(answer["probabilities"]), abs=1e-6)
    assert answer["unsure"] == (answer["least_probability"] < answer["unsure_below"] == UNSURE_BELOW)
    fine = client.post("/api/seq2seq/translate", json={"text": "3 mars 2021"}).json()
    assert fine["calendar"]["real"] and fine["warnings"] == [] and not fine["unsure"]


@pytest.mark.parametrize(("text", "year"), [("3/4/21", False), ("tomorrow", False), ("le 3 mars 2021", True),
                                            ("2021.3.4", True), ("12345", False)])  # fmt: skip
def test_an_input_without_a_four_digit_year_is_said(client, text, year):
    answer = client.post("/api/seq2seq/translate", json={"text": text}).json()
    assert answer["year_in_input"] is year
    assert ("the input holds no four-digit year, which the model copies" in answer["warnings"]) is not year
