"""What incremental decoding keeps between steps: a self-attention layer's key/value cache (and its causal
mask), and the transposed weight copies of :func:`step_linear`."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KVCache", "step_linear", "transposed"]

_TRANSPOSED = "_labformer_transposed"  # the attribute of a weight that holds its (in, out) copy


def transposed(weight: Tensor) -> Tensor:
    """A contiguous (in, out) copy of an (out, in) weight, kept on the weight and made again only when the
    weight has been replaced or changed in place (its version counter): training between generations is
    seen, and a cache refilled every ``block_size // 2`` tokens does not copy the weights again."""
    key = (weight.data_ptr(), weight._version)
    held = getattr(weight, _TRANSPOSED, None)
    if held is None or held[0] != key:
        held = (key, weight.detach().t().contiguous())
        setattr(weight, _TRANSPOSED, held)
    return held[1]


def step_linear(x: Tensor, weight_t: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for the new token of a decoding step, given ``weight_t``, the weight
    laid out (in, out) (:meth:`KVCache.transposed`): x (B, 1, in) -> (B, 1, out)."""
    rows = x.reshape(-1, x.shape[-1])
    out = rows @ weight_t if bias is None else torch.addmm(bias, rows, weight_t)
    return out.view(*x.shape[:-1], out.shape[-1])


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
        self._weights: dict[int, Tensor] = {}  # id(weight) -> its (in, out) copy, see transposed()

    @property
    def k(self) -> Tensor | None:
        return None if self._k is None else self._k[..., : self._length, :]

    @property
    def v(self) -> Tensor | None:
        return None if self._v is None else self._v[..., : self._length, :]

    def __len__(self) -> int:
        return self._length

    def transposed(self, weight: Tensor) -> Tensor:
        """The layer's ``weight`` (out, in) laid out (in, out) for :func:`step_linear`, looked up once per
        cache (then a dictionary read a step).

        A batch-1 decoding step is a chain of matrix-vector products, each reading its whole weight. On a
        CPU, torch's float32 product reads a weight laid out (in, out) faster than ``F.linear`` reads the
        (out, in) parameter: the lab's GPT decodes about 1.2x faster (README, issue 13). On a GPU, or for
        weights made in inference mode (no version counter), this is the weight's transposed view, which
        ``step_linear`` multiplies as ``F.linear`` would.
        """
        held = self._weights.get(id(weight))
        if held is None:
            cpu = weight.device.type == "cpu" and not weight.is_inference()
            held = self._weights[id(weight)] = transposed(weight) if cpu else weight.t()
        return held

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

    def causal_mask(self, num_new: int, device: torch.device) -> Tensor:
        """(T, past + T) boolean: new token i (at position past + i) may attend keys 0 … past + i.

        Call before :meth:`extend` with the T new tokens (bottom-right aligned causality).
        """
        past = len(self)
        if self.sliding and (self.seen > past or past + num_new > (self.capacity or 0)):
            raise ValueError("a sliding cache that has wrapped takes one new token at a time, without a mask")
        return torch.ones(num_new, past + num_new, dtype=torch.bool, device=device).tril(past)
