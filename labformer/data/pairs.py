"""Source → target pairs of characters for the encoder–decoder: the tasks (``dates``, ``reverse``, ``pairs``
from a TSV file), their splits, and the character vocabularies built from the training split.

Every split is a list of (source, target, group) triples; ``group`` names what the pair is an example of
(a date's language and format, a string's length), for accuracy by group.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from labformer.data.dates import date_pairs

__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "TASKS", "UNK", "PairData", "Vocabulary", "load_pairs", "read_tsv"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
TASKS = ("dates", "reverse", "pairs")
REVERSE_SYMBOLS = "abcdefghijklmnopqrstuvwxyz"
REVERSE_LENGTHS = (1, 16)

Triple = tuple[str, str, str]


class Vocabulary:
    """Characters <-> ids after the four special tokens (padding, start, end, unknown).

    Example:
        >>> v = Vocabulary(["a", "b"])
        >>> v.encode("ab").tolist(), v.decode([4, 5, 2, 4])
        ([4, 5], 'ab')
    """

    def __init__(self, chars: list[str]) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary must be a list of distinct single characters")
        self.chars = list(chars)
        self.index = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, texts: list[str]) -> Vocabulary:
        return cls(sorted(set("".join(texts))))

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str) -> Tensor:
        """str -> (len,) int64; a character outside the vocabulary is the unknown token."""
        return torch.tensor([self.index.get(c, UNK) for c in text], dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        """Ids -> str, up to the first end token; start and padding tokens are skipped, unknown is "?"."""
        out = []
        for i in map(int, ids):
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.chars[i - len(SPECIALS)])
            elif i == UNK:
                out.append("?")
        return "".join(out)

    def unknown(self, text: str) -> list[str]:
        return sorted({c for c in text if c not in self.index})


@dataclass
class PairData:
    """The splits of a task and their vocabularies."""

    splits: dict[str, list[Triple]]
    source_vocab: Vocabulary
    target_vocab: Vocabulary

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """The split as padded ids: sources (N, S) and targets (N, T + 2) framed by start and end tokens."""
        return self.encode([s for s, _, _ in self.splits[split]], [t for _, t, _ in self.splits[split]])

    def encode(self, sources: list[str], targets: list[str] | None = None) -> tuple[Tensor, Tensor]:
        """Padded source ids (N, S) and, if given, framed target ids (N, T + 2); else (N, 0)."""
        encoded = [self.source_vocab.encode(s) for s in sources]
        source = torch.full((len(encoded), max(map(len, encoded), default=1)), PAD, dtype=torch.long)
        for i, ids in enumerate(encoded):
            source[i, : len(ids)] = ids
        if targets is None:
            return source, torch.empty(len(sources), 0, dtype=torch.long)
        framed = [torch.cat([torch.tensor([BOS]), self.target_vocab.encode(t), torch.tensor([EOS])]) for t in targets]
        target = torch.full((len(framed), max(map(len, framed))), PAD, dtype=torch.long)
        for i, ids in enumerate(framed):
            target[i, : len(ids)] = ids
        return source, target

    def longest(self) -> tuple[int, int]:
        """The longest source and target of every split, in characters."""
        triples = [t for split in self.splits.values() for t in split]
        return max(len(s) for s, _, _ in triples), max(len(t) for _, t, _ in triples)


def _reverse_pairs(split: str, count: int, seed: int) -> list[Triple]:
    """Strings of letters to their reverse; a string belongs to test if its CRC-32 is 0 mod 10 (so no test
    string is ever trained on), to train or val otherwise (val: another stream)."""
    rng = random.Random(f"reverse-{split}-{seed}")
    pairs = []
    while len(pairs) < count:
        length = rng.randint(*REVERSE_LENGTHS)
        text = "".join(rng.choice(REVERSE_SYMBOLS) for _ in range(length))
        if (zlib.crc32(text.encode()) % 10 == 0) == (split == "test"):
            pairs.append((text, text[::-1], f"length {length}"))
    return pairs


def read_tsv(path: str | Path, *, max_source: int | None = None, max_target: int | None = None) -> list[Triple]:
    """Source TAB target per line (UTF-8). One ValueError naming the file and line for a line that is not
    UTF-8, has no tab, has an empty side, or is longer than ``max_source``/``max_target`` characters;
    blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data-file {path} does not exist")
    pairs = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ValueError(f"{path}, line {number}: not UTF-8 text") from None
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{path}, line {number}: no tab; each line is source<TAB>target")
            source, target = line.split("\t", 1)
            if not source.strip() or not target.strip():
                side = "source" if not source.strip() else "target"
                raise ValueError(f"{path}, line {number}: the {side} is empty")
            for side, text, limit in (("source", source, max_source), ("target", target, max_target)):
                if limit is not None and len(text) > limit:
                    raise ValueError(
                        f"{path}, line {number}: the {side} has {len(text)} characters; the model takes at most {limit}"
                    )
            pairs.append((source, target, "pairs"))
    if len(pairs) < 10:
        raise ValueError(f"{path} holds {len(pairs)} pairs; at least 10 are needed (train, validation and test)")
    return pairs


def load_pairs(
    task: str,
    *,
    train_size: int,
    val_size: int,
    test_size: int,
    seed: int,
    data_file: str | None = None,
    vocabularies: tuple[list[str], list[str]] | None = None,
    max_source: int | None = None,
    max_target: int | None = None,
) -> PairData:
    """A task's splits. ``dates`` and ``reverse`` are generated (``*_size`` pairs each, from ``seed``);
    ``pairs`` reads ``data_file`` and splits it with ``seed`` (the sizes then cap validation and test,
    at most a tenth each). ``vocabularies`` (source, target characters): a trained run's, else built
    from the training split. ``max_source``/``max_target``: the longest source and target (in characters)
    the model takes; a longer line of ``data_file`` is an error naming it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if (task == "pairs") != (data_file is not None):
        raise ValueError("--data-file is read by --task pairs only" if data_file else "--task pairs needs --data-file")
    if task == "pairs":
        triples = read_tsv(data_file, max_source=max_source, max_target=max_target)  # type: ignore[arg-type]
        random.Random(f"pairs-{seed}").shuffle(triples)
        held = max(1, min(len(triples) // 10, val_size, test_size))
        splits = {"test": triples[:held], "val": triples[held : 2 * held], "train": triples[2 * held :]}
    else:
        make = date_pairs if task == "dates" else _reverse_pairs
        splits = {
            "train": make("train", train_size, seed),
            "val": make("val", val_size, seed),
            "test": make("test", test_size, seed),
        }
    if vocabularies is None:
        train = splits["train"]
        vocabularies = (Vocabulary.from_texts([s for s, _, _ in train]).chars,
                        Vocabulary.from_texts([t for _, t, _ in train]).chars)  # fmt: skip
    return PairData(splits, Vocabulary(vocabularies[0]), Vocabulary(vocabularies[1]))
