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

    ``k`` and ``v`` are the filled part, (B, H, S, head_dim), or None before the first call.
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity <= 0:
            raise ValueError(f"capacity must be a positive number of positions; got {capacity}")
        self.capacity = capacity
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self._length = 0

    @property
    def k(self) -> Tensor | None:
        return None if self._k is None else self._k[..., : self._length, :]

    @property
    def v(self) -> Tensor | None:
        return None if self._v is None else self._v[..., : self._length, :]

    def __len__(self) -> int:
        return self._length

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Appends new (B, H, T, hd) keys and values; returns all of them, (B, H, S + T, hd)."""
        end = self._length + k.shape[-2]
        if self.capacity is None:
            if self._k is not None:
                k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
            self._k, self._v, self._length = k, v, end
            return k, v
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {end} were asked for")
        if self._k is None:  # one buffer for the whole sequence, filled in place
            self._k = k.new_empty(*k.shape[:-2], self.capacity, k.shape[-1])
            self._v = v.new_empty(*v.shape[:-2], self.capacity, v.shape[-1])
        self._k[..., self._length : end, :] = k
        self._v[..., self._length : end, :] = v  # type: ignore[index]
        self._length = end
        return self.k, self.v  # type: ignore[return-value]

    def causal_mask(self, num_new: int, device: torch.device) -> Tensor:
        """(T, past + T) boolean: new token i (at position past + i) may attend keys 0 … past + i.

        Call before :meth:`extend` with the T new tokens (bottom-right aligned causality).
        """
        past = len(self)
        return torch.ones(num_new, past + num_new, dtype=torch.bool, device=device).tril(past)
