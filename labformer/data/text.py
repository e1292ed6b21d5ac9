"""Text corpora for the character language model (Part 5): tokenizer, splits, random windows.

The default corpus is Tiny Shakespeare (1,115,394 characters): ``$LABFORMER_SHAKESPEARE`` if set,
else the cached copy, else downloaded once from its public URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from labformer.data.download import cache_dir, download

__all__ = ["CharTokenizer", "TextData", "load_text", "shakespeare_path"]

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


class CharTokenizer:
    """Characters <-> integer ids; the vocabulary is the sorted set of the corpus's characters."""

    def __init__(self, chars: list[str]) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary must be a list of distinct single characters")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        """str -> (len,) int64; unknown characters are a ValueError naming them."""
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise ValueError(f"characters {unknown} are not in the model's vocabulary of {len(self)} characters")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def shakespeare_path() -> Path:
    """Tiny Shakespeare: ``$LABFORMER_SHAKESPEARE``, else the cache (downloaded when missing)."""
    if "LABFORMER_SHAKESPEARE" in os.environ:
        return Path(os.environ["LABFORMER_SHAKESPEARE"])
    return download(
        SHAKESPEARE_URL,
        cache_dir() / "tinyshakespeare.txt",
        what="Tiny Shakespeare",
        hint="pass a text file with --text FILE (or set LABFORMER_SHAKESPEARE)",
    )


def read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"text file {path} is not UTF-8 ({error.reason} at byte {error.start})") from None
    if not text:
        raise ValueError(f"text file {path} is empty")
    return text


@dataclass
class TextData:
    """A corpus encoded as ids and split 90/10 into training and validation tensors."""

    tokenizer: CharTokenizer
    train: Tensor  # (N_train,) int64
    val: Tensor  # (N_val,) int64

    def batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """Random windows: x (B, block_size) and y = x shifted by one (B, block_size)."""
        data = self.train if split == "train" else self.val
        start = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        index = start[:, None] + torch.arange(block_size + 1)  # (B, block + 1)
        window = data[index].to(device, non_blocking=True)
        return window[:, :-1], window[:, 1:]


def load_text(
    path: str | Path | None = None,
    *,
    block_size: int,
    tokenizer: CharTokenizer | None = None,
    val_fraction: float = 0.1,
) -> TextData:
    """Reads, tokenizes and splits a corpus (default: Tiny Shakespeare).

    Raises FileNotFoundError / ValueError for a missing, empty, non-UTF-8 or too-short file.
    """
    path = Path(path) if path is not None else shakespeare_path()
    text = read_text(path)
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    split = int(len(ids) * (1 - val_fraction))
    train, val = ids[:split], ids[split:]
    if len(val) < block_size + 1:
        raise ValueError(
            f"text file {path} has {len(text)} characters: too short for block_size {block_size} "
            f"(the validation tenth needs at least {block_size + 1}; "
            f"give at least {int((block_size + 1) / val_fraction) + 1} characters)"
        )
    return TextData(tokenizer, train, val)
