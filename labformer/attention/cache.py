"""The key/value cache of a self-attention layer for incremental decoding, and its causal mask."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KVCache"]


class KVCache:
    """The keys and values a self-attention layer has seen so far, for incremental decoding.

    Args:
        capacity: the most positions it will hold (e.g. the model's block size). Given, the buffers are
            allocated once at the first call and each new token's keys and values are written in place;
            without it, every call concatenates.
        sliding: once full, each new position overwrites the oldest (a ring buffer: the window slides
            by one token with no copy). Only for keys whose scores depend on relative positions (rotary
            embeddings), and one new token at a time attending every held key: their order in ``k``
            then no longer follows the positions, which a single unmasked query does not see.

    ``k`` and ``v`` are the held part, (B, H, S, head_dim), or None before the first call.
    """

    def __init__(self, capacity: int | None = None, *, sliding: bool = False) -> None:
        if capacity is not None and capacity <= 0:
            raise ValueError(f"capacity must be a positive number of positions; got {capacity}")
        if sliding and capacity is None:
            raise ValueError("a sliding cache needs a capacity")
        self.capacity, self.sliding = capacity, sliding
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self._length = 0  # positions held
        self.seen = 0  # positions written in all: the next token's position

    @property
    def k(self) -> Tensor | None:
        return None if self._k is None else self._k[..., : self._length, :]

    @property
    def v(self) -> Tensor | None:
        return None if self._v is None else self._v[..., : self._length, :]

    def __len__(self) -> int:
        return self._length

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Appends new (B, H, T, hd) keys and values; returns all held, (B, H, S + T, hd) (a sliding cache:
        at most ``capacity``)."""
        new = k.shape[-2]
        end = self._length + new
        if self.capacity is None:
            if self._k is not None:
                k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
            self._k, self._v, self._length, self.seen = k, v, end, end
            return k, v
        if new > self.capacity or (end > self.capacity and not self.sliding):
            raise ValueError(f"the cache holds {self.capacity} positions; {end} were asked for")
        if self._k is None:  # one buffer for the whole sequence, filled in place
            self._k = k.new_empty(*k.shape[:-2], self.capacity, k.shape[-1])
            self._v = v.new_empty(*v.shape[:-2], self.capacity, v.shape[-1])
        assert self._v is not None
        start = self.seen % self.capacity  # = the length until a sliding cache is full
        first = min(new, self.capacity - start)  # written before the ring wraps
        for buffer, values in ((self._k, k), (self._v, v)):
            buffer[..., start : start + first, :] = values[..., :first, :]
            if first < new:  # the ring wraps: the oldest positions are overwritten
                buffer[..., : new - first, :] = values[..., first:, :]
        self._length, self.seen = min(end, self.capacity), self.seen + new
        return self.k, self.v  # type: ignore[return-value]

    def reorder(self, index: Tensor) -> None:
        """Keeps the batch rows ``index`` (B',) of the held keys and values, in that order (beam search: each
        surviving hypothesis takes its parent's cache)."""
        if self._k is not None and self._v is not None:
            self._k, self._v = self._k.index_select(0, index), self._v.index_select(0, index)

    def causal_mask(self, num_new: int, device: torch.device) -> Tensor:
        """(T, past + T) boolean: new token i (at position past + i) may attend keys 0 … past + i.

        Call before :meth:`extend` with the T new tokens (bottom-right aligned causality).
        """
        past = len(self)
        if self.sliding and (self.seen > past or past + num_new > (self.capacity or 0)):
            raise ValueError("a sliding cache that has wrapped takes one new token at a time, without a mask")
        return torch.ones(num_new, past + num_new, dtype=torch.bool, device=device).tril(past)
