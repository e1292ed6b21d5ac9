"""The key/value cache of a self-attention layer for incremental decoding, and its causal mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["KVCache"]


@dataclass
class KVCache:
    """The keys and values a self-attention layer has seen so far, for incremental decoding.

    ``k`` and ``v`` are (B, H, S, head_dim) or None before the first call.
    """

    k: Tensor | None = None
    v: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Appends new (B, H, T, hd) keys and values; returns all of them, (B, H, S + T, hd)."""
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
        self.k, self.v = k, v
        return k, v

    def causal_mask(self, num_new: int, device: torch.device) -> Tensor:
        """(T, past + T) boolean: new token i (at position past + i) may attend keys 0 … past + i.

        Call before :meth:`extend` with the T new tokens (bottom-right aligned causality).
        """
        past = len(self)
        return torch.ones(num_new, past + num_new, dtype=torch.bool, device=device).tril(past)
