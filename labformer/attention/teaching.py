"""The lab's teaching form of multi-head attention: one module per head, concatenated, projected."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from labformer.attention.functional import attention_weights
from labformer.attention.multi_head import MultiHeadAttention

__all__ = ["AttentionHead", "ConcatHeadsAttention"]


class AttentionHead(nn.Module):
    """One head of the lab's teaching form: its own q/k/v projections, softmax, dropout.

    Args:
        dim: model dimension D.
        head_dim: size of this head's queries, keys and values.
        dropout: dropout on the attention weights.
        bias: biases on the projections (the lab's head has none).

    Forward: x (B, T, D) -> (B, T, head_dim).
    """

    def __init__(self, dim: int, head_dim: int, *, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.query = nn.Linear(dim, head_dim, bias=bias)
        self.key = nn.Linear(dim, head_dim, bias=bias)
        self.value = nn.Linear(dim, head_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)  # (B, T, head_dim)
        weights = attention_weights(q, k, mask, causal=causal)  # (B, T, T)
        return self.dropout(weights) @ v


class ConcatHeadsAttention(nn.Module):
    """The lab's multi-head attention: independent heads side by side, concatenated, projected.

    Computes the same function as :class:`MultiHeadAttention` (one batched projection for all heads);
    :meth:`from_multi_head` copies a ``MultiHeadAttention``'s weights into this form.

    Args:
        dim: model dimension D.
        num_heads: number of heads.
        dropout: dropout on the attention weights and after the projection.
        bias: biases on all projections.
        head_dim: each head's size, the lab's ``head_size`` (default ``dim // num_heads``); the heads
            concatenate to ``num_heads * head_dim``, which the projection maps to ``dim``.
    """

    def __init__(
        self, dim: int, num_heads: int, *, dropout: float = 0.0, bias: bool = False, head_dim: int | None = None
    ) -> None:
        super().__init__()
        if head_dim is None and dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        head_dim = head_dim or dim // num_heads
        self.heads = nn.ModuleList(AttentionHead(dim, head_dim, dropout=dropout, bias=bias) for _ in range(num_heads))
        self.proj = nn.Linear(num_heads * head_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """x (B, T, D) -> (B, T, D)."""
        heads = [head(x, mask=mask, causal=causal) for head in self.heads]  # H x (B, T, hd)
        return self.dropout(self.proj(torch.cat(heads, dim=-1)))

    @classmethod
    def from_multi_head(cls, mha: MultiHeadAttention) -> ConcatHeadsAttention:
        """The teaching form of ``mha`` (self-attention weights), computing the same function."""
        bias = mha.in_proj_bias is not None
        out = cls(mha.dim, mha.num_heads, bias=bias, head_dim=mha.head_dim).to(mha.out_proj.weight)
        if mha.same_dims:
            weights = mha.in_proj_weight.chunk(3)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        biases = mha.in_proj_bias.chunk(3) if bias else (None, None, None)
        hd = mha.head_dim
        with torch.no_grad():
            for h, head in enumerate(out.heads):
                rows = slice(h * hd, (h + 1) * hd)
                for linear, weight, b in zip((head.query, head.key, head.value), weights, biases):
                    linear.weight.copy_(weight[rows])
                    if b is not None:
                        linear.bias.copy_(b[rows])
            out.proj.load_state_dict(mha.out_proj.state_dict())
        return out
