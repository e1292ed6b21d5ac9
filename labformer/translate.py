"""Reading with a trained encoder–decoder: each input's output (decoded in batches), the attention while
writing it, and how far to trust an answer — its least likely character and, for the dates task, the
calendar. Used by `labformer translate`, the Seq2seq page and the lab; training scores with it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from labformer.data.dates import CalendarCheck, check_calendar
from labformer.data.pairs import PairData
from labformer.models.seq2seq import Attention, Seq2Seq

__all__ = ["UNSURE_BELOW", "Reading", "attention_examples", "read_texts", "reading", "translate_texts"]

UNSURE_BELOW = 0.5  # an answer whose least likely character (or end) has a lower probability is flagged unsure


def translate_texts(
    model: Seq2Seq, data: PairData, sources: list[str], *, beam: int = 1, batch_size: int = 512
) -> list[str]:
    """Each source's output, decoded in batches (greedy with ``beam`` 1, else beam search)."""
    device = next(model.parameters()).device
    outputs: list[str] = []
    for start in range(0, len(sources), batch_size):
        source, _ = data.encode(sources[start : start + batch_size])
        decoded = model.translate(source.to(device), beam=beam)
        outputs += [data.target_vocab.decode(tokens) for tokens in decoded.tokens]
    return outputs


def attention_examples(
    model: Seq2Seq, data: PairData, sources: list[str], *, beam: int = 1
) -> list[tuple[str, str, Attention]]:
    """(source, written, :class:`~labformer.models.seq2seq.Attention`) of each source: what the model writes
    and its three kinds of attention while writing it, with the probability of each written character."""
    device = next(model.parameters()).device
    examples = []
    for source in sources:
        ids = data.source_vocab.encode(source).to(device)
        tokens = model.translate(ids[None], beam=beam).tokens[0]
        written = data.target_vocab.decode(tokens)
        examples.append((source, written, model.attention(ids, torch.tensor(tokens, dtype=torch.long, device=device))))
    return examples


@dataclass(frozen=True)
class Reading:
    """An answer and how far to trust it.

    ``probabilities`` holds the model's probability of each written character, then of the end (the
    same numbers the page shows under each character); ``calendar`` is the dates task's check of the
    answer against the calendar (None for other tasks), and ``year_in_input`` whether the input holds a
    four-digit number, the year the dates model copies (None for other tasks).
    """

    source: str
    output: str
    probabilities: tuple[float, ...]
    calendar: CalendarCheck | None = None
    year_in_input: bool | None = None

    @property
    def least_probability(self) -> float:
        return min(self.probabilities, default=0.0)

    @property
    def unsure(self) -> bool:
        """True when the least likely character is under :data:`UNSURE_BELOW`."""
        return self.least_probability < UNSURE_BELOW

    def warnings(self) -> list[str]:
        """What to tell a reader, in English: no year in the input, not a real date, outside the years learnt,
        unsure."""
        found = ["the input holds no four-digit year, which the model copies"] if self.year_in_input is False else []
        if self.calendar is not None and self.calendar.describe():
            found.append(self.calendar.describe())
        if self.unsure:
            found.append(f"unsure: its least likely character has probability {self.least_probability:.3f} "
                         f"(under {UNSURE_BELOW})")  # fmt: skip
        return found


def reading(source: str, written: str, attention: Attention, task: str | None) -> Reading:
    """The :class:`Reading` of one of :func:`attention_examples`' examples, for a run of ``task``."""
    probabilities = tuple(float(p) for p in attention.probabilities)
    if task != "dates":
        return Reading(source, written, probabilities)
    year = re.search(r"(?<!\d)\d{4}(?!\d)", source) is not None
    return Reading(source, written, probabilities, check_calendar(written), year)


def read_texts(
    model: Seq2Seq, data: PairData, sources: list[str], *, beam: int = 1, task: str | None = None
) -> list[Reading]:
    """Each source's answer with its probabilities and, for the dates ``task``, its calendar check."""
    return [reading(*example, task) for example in attention_examples(model, data, sources, beam=beam)]
