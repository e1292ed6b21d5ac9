"""Recording attention weights from any model built of labformer's multi-head attention."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from labformer.attention.multi_head import MultiHeadAttention

__all__ = ["attention_rollout", "record_attention"]


@contextlib.contextmanager
def record_attention(module: nn.Module) -> Iterator[list[Tensor]]:
    """Records the (B, H, T, S) weights of every attention call inside ``module``, in call order.

    Outputs are unchanged. Works for any model built from labformer's :class:`MultiHeadAttention`.

    Example:
        >>> layer = EncoderLayer(32, 4, 64)
        >>> with record_attention(layer) as maps:
        ...     _ = layer(torch.randn(2, 5, 32))
        >>> maps[0].shape
        torch.Size([2, 4, 5, 5])
    """
    recorder: list[Tensor] = []
    layers = [m for m in module.modules() if isinstance(m, MultiHeadAttention)]
    if not layers:
        raise ValueError(
            f"{type(module).__name__} holds no labformer MultiHeadAttention to record "
            "(a torch.nn.TransformerEncoder cannot expose its weights; use backend='labformer')"
        )
    for layer in layers:
        layer._recorders.append(recorder)
    try:
        yield recorder
    finally:
        for layer in layers:
            layer._recorders.remove(recorder)


def attention_rollout(maps: list[Tensor]) -> Tensor:
    """Abnar & Zuidema (2020): product over layers of (head-mean attention + identity), rows renormalised.

    maps: per layer (B, H, T, T) -> (B, T, T).
    """
    rollout = None
    for weights in maps:
        attention = weights.mean(1)  # (B, T, T)
        attention = attention + torch.eye(attention.shape[-1], device=attention.device)
        attention = attention / attention.sum(-1, keepdim=True)
        rollout = attention if rollout is None else attention @ rollout
    assert rollout is not None
    return rollout
