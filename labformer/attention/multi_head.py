"""Part 2 of the lab: multi-head attention with the parameter layout of ``torch.nn.MultiheadAttention``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer.attention.cache import KVCache
from labformer.attention.functional import (
    _check_mask_dtype,
    _reference_attention,
    _restrict,
    _scores_mask,
    merge_masks,
    scaled_dot_product_attention,
)
from labformer.position import apply_rotary

__all__ = ["MultiHeadAttention"]


def _mask_for_heads(mask: Tensor | None, batch: int) -> Tensor | None:
    """A layer's mask as the scores' (B|1, H|1, T, S) or (T, S): a 3-D (B, T, S) mask gains a heads axis."""
    if mask is None:
        return None
    _check_mask_dtype(mask)
    if mask.dim() == 3 and mask.shape[0] in (batch, 1):
        return mask.unsqueeze(1)  # (B, 1, T, S): the same for every head
    if mask.dim() in (2, 4):
        return mask  # its sizes are checked against the scores when attending
    hint = " (3-D masks are per batch item, not per batch·heads as in torch.nn.MultiheadAttention)"
    raise ValueError(
        f"mask must have shape (queries, keys), (batch, queries, keys) or (batch, heads, queries, keys), "
        f"with batch = {batch} or 1; got {tuple(mask.shape)}" + (hint if mask.dim() == 3 else "")
    )


def _head_views(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3D) fused projections -> q, k, v (B, H, T, hd), views of it."""
    B, T, E = qkv.shape
    q, k, v = qkv.view(B, T, 3, heads, E // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


class _SplitHeads(torch.autograd.Function):
    """:func:`_head_views` whose backward writes the three gradients into one (B, T, 3D) tensor with a
    single copy.

    Through the plain views, autograd zero-fills, stacks the three gradients into a new tensor and copies
    that once more into the (B, T, 3D) layout the matrix product needs. With one thread that was about a
    tenth of a fast-ViT training step; with two, an attention block's forward and backward runs about
    10 % faster this way at the ViT's sizes, 2 % at the GPT's (docs/performance.md).
    """

    @staticmethod
    def forward(ctx, qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return _head_views(qkv, heads)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return torch.stack([g.transpose(1, 2) for g in grads], dim=2).flatten(2), None


def _split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3D) -> q, k, v (B, H, T, hd): :class:`_SplitHeads` where a gradient will flow back (not
    under torch.compile, which plans its own copies), else the plain views."""
    if qkv.requires_grad and not torch.compiler.is_compiling():
        return _SplitHeads.apply(qkv, heads)
    return _head_views(qkv, heads)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first, with the parameter layout of ``torch.nn.MultiheadAttention``.

    Args:
        dim: model dimension D (queries and output).
        num_heads: number of heads H; must divide ``dim``.
        dropout: dropout on the attention weights.
        bias: add biases to the input and output projections.
        kdim: dimension of the keys (default ``dim``).
        vdim: dimension of the values (default ``dim``).
        qk_norm: RMS-normalise each head's queries and keys (with a learned gain per dimension) before
            the scores, which bounds them (beyond the lab; Dehghani et al. 2023).
        head_dim: size of each head's queries, keys and values (default ``dim // num_heads``). The lab's
            ``MultiHeadAttention(num_heads, dim_embed, head_size)`` lets ``num_heads * head_size`` differ from
            ``dim`` (12 heads of 42 on 512): the heads then concatenate to ``num_heads * head_dim`` and the
            output projection maps that back to ``dim``.

    The state dict has exactly the keys and shapes of ``torch.nn.MultiheadAttention(dim, num_heads,
    bias=bias, kdim=kdim, vdim=vdim, batch_first=True)``, so weights load both ways (with ``qk_norm``,
    plus ``q_norm.weight`` and ``k_norm.weight``; with a ``head_dim`` other than ``dim // num_heads``, the
    projections have ``num_heads * head_dim`` rows, which torch's module cannot hold).

    Example:
        >>> mha = MultiHeadAttention(64, 8)
        >>> mha(torch.randn(2, 10, 64), causal=True).shape
        torch.Size([2, 10, 64])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        qk_norm: bool = False,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        named = (("dim", dim), ("num_heads", num_heads), ("kdim", kdim), ("vdim", vdim), ("head_dim", head_dim))
        for name, value in named:
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if head_dim is None and dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, head_dim or dim // num_heads
        self.inner = inner = num_heads * self.head_dim  # the concatenated heads' width
        self.kdim, self.vdim = kdim or dim, vdim or dim
        self.dropout = dropout
        self.same_dims = self.kdim == dim and self.vdim == dim
        if self.same_dims:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, dim))
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(inner, dim))
            self.k_proj_weight = nn.Parameter(torch.empty(inner, self.kdim))
            self.v_proj_weight = nn.Parameter(torch.empty(inner, self.vdim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * inner)) if bias else None
        self.out_proj = nn.Linear(inner, dim, bias=bias)
        self.q_norm = nn.RMSNorm(self.head_dim) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else None
        self._recorders: list[list[Tensor]] = []
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: Xavier-uniform projections, zero biases."""
        if self.same_dims:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                nn.init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Input projections, split into heads: (B, H, T, hd), (B, H, S, hd), (B, H, S, hd)."""
        B, T, _ = query.shape
        S = key.shape[1]
        H, hd, D = self.num_heads, self.head_dim, self.inner
        bias = self.in_proj_bias
        if self.same_dims and key is query and value is query:
            return _split_heads(F.linear(query, self.in_proj_weight, bias), H)  # from (B, T, 3D)
        if self.same_dims:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q, b_k, b_v = bias.chunk(3) if bias is not None else (None, None, None)
        if self.same_dims and key is value:
            k, v = F.linear(key, self.in_proj_weight[D:], None if bias is None else bias[D:]).chunk(2, -1)
        else:
            k, v = F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        q = F.linear(query, w_q, b_q)
        return (
            q.view(B, T, H, hd).transpose(1, 2),
            k.reshape(B, S, H, hd).transpose(1, 2),
            v.reshape(B, S, H, hd).transpose(1, 2),
        )

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor, key_mask: Tensor | None) -> None:
        if query.dim() != 3 or query.shape[-1] != self.dim:
            raise ValueError(f"query must have shape (batch, tokens, {self.dim}); got {tuple(query.shape)}")
        if key.dim() != 3 or key.shape[-1] != self.kdim or key.shape[0] != query.shape[0]:
            raise ValueError(f"key must have shape ({query.shape[0]}, tokens, {self.kdim}); got {tuple(key.shape)}")
        if value.dim() != 3 or value.shape[-1] != self.vdim or value.shape[:2] != key.shape[:2]:
            raise ValueError(
                f"value must have shape ({key.shape[0]}, {key.shape[1]}, {self.vdim}); got {tuple(value.shape)}"
            )
        if key_mask is not None and tuple(key_mask.shape) != tuple(key.shape[:2]):
            raise ValueError(
                f"key_mask must have shape (batch, keys) = {tuple(key.shape[:2])}; got {tuple(key_mask.shape)}"
            )

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        rope: Tensor | None = None,
    ) -> Tensor:
        """Attends from ``query`` to ``key``/``value`` (both default to ``query``: self-attention).

        Args:
            query: (B, T, dim).
            key: (B, S, kdim).
            value: (B, S, vdim).
            mask: boolean (True = may attend) or floating (added to the scores), of shape (T, S) for every
                batch item and head, (B, T, S) per batch item, or (B, H, T, S) per head; 1 broadcasts in
                B and H. Other shapes are refused (a 3-D mask is never read as per-head).
            key_mask: (B, S) boolean, True = real token, False = padding (never attended).
            causal: query i only attends keys j <= i.
            cache: self-attention only: the earlier tokens' keys and values, extended in place with
                this call's; the T queries are then the tokens after them (and ``causal`` counts
                positions from the cache's start). ``key_mask`` must then cover the cached keys too.
            rope: self-attention only: the rotations of the T tokens, complex (T, head_dim/2) or
                (B, 1, T, head_dim/2) (:class:`labformer.position.RotaryEmbedding`); queries and keys
                are turned by them (and cached turned).

        Returns:
            (B, T, dim). A query with nothing to attend to gets the output projection's bias.
        """
        key = query if key is None else key
        value = key if value is None else value
        if cache is not None and not (key is query and value is query):
            raise ValueError("a KVCache can only be used for self-attention (key and value = query)")
        self._check_inputs(query, key, value, None if cache is not None else key_mask)
        if rope is not None and not (key is query and value is query):
            raise ValueError("rotary embeddings (rope) apply to self-attention only (key and value = query)")
        q, k, v = self._project(query, key, value)  # (B, H, T|S, hd)
        q, k = self._position_and_norm(q, k, rope)
        mask = merge_masks(_mask_for_heads(mask, query.shape[0]), key_mask)
        if cache is not None:
            if causal and len(cache):  # new token i sits at position past + i
                one_new = q.shape[-2] == 1  # one new token attends every key: no mask to build
                mask = mask if one_new else _restrict(mask, cache.causal_mask(q.shape[-2], q.device))
                causal = False
            k, v = cache.extend(k, v)
        return self.out_proj(self._attend(q, k, v, mask, causal))

    def memory_keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """A cross-attention's keys and values of ``memory`` (B, S, kdim): (B, H, S, hd) each, computed once
        per input and reused by every decoding step (:meth:`attend_memory`)."""
        B, S, _ = memory.shape
        H, hd, D = self.num_heads, self.head_dim, self.inner
        bias = self.in_proj_bias
        if self.same_dims:
            k, v = F.linear(memory, self.in_proj_weight[D:], None if bias is None else bias[D:]).chunk(2, -1)
        else:
            b_k, b_v = (None, None) if bias is None else bias.chunk(3)[1:]
            k, v = F.linear(memory, self.k_proj_weight, b_k), F.linear(memory, self.v_proj_weight, b_v)
        k, v = k.reshape(B, S, H, hd).transpose(1, 2), v.reshape(B, S, H, hd).transpose(1, 2)
        return (self.k_norm(k) if self.k_norm is not None else k), v

    def attend_memory(
        self, query: Tensor, keys_values: tuple[Tensor, Tensor], *, key_mask: Tensor | None = None
    ) -> Tensor:
        """Cross-attention from ``query`` (B, T, dim) to keys and values from :meth:`memory_keys_values`
        -> (B, T, dim); the same as ``forward(query, memory, memory, key_mask=key_mask)``."""
        B, T, _ = query.shape
        w_q = self.in_proj_weight[: self.inner] if self.same_dims else self.q_proj_weight
        b_q = None if self.in_proj_bias is None else self.in_proj_bias[: self.inner]
        q = F.linear(query, w_q, b_q).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        q = self.q_norm(q) if self.q_norm is not None else q
        k, v = keys_values
        return self.out_proj(self._attend(q, k, v, merge_masks(None, key_mask), False))

    def _position_and_norm(self, q: Tensor, k: Tensor, rope: Tensor | None) -> tuple[Tensor, Tensor]:
        """Projected heads (B, H, T|S, hd): QK-norm, then the rotary positions, if the layer has them."""
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        return q, k

    def fast(self, x: Tensor, cache: KVCache | None = None, rope: Tensor | None = None) -> Tensor:
        """Unmasked self-attention in evaluation, the fast path: x (B, T, D) -> (B, T, D).

        Without a cache: every token attends every token (a ViT's encoder). With a cache: one new token
        per sequence (T = 1) attends every cached key and itself, which is causal decoding. Either way
        no mask is built, and nothing is checked, recorded or dropped out: one fused QKV projection,
        torch's fused attention, the output projection. ``forward`` stays the reference (the tests
        compare the two).
        """
        B, T, _ = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3 H hd)
        q, k, v = _head_views(qkv, self.num_heads)  # 3 × (B, H, T, hd)
        q, k = self._position_and_norm(q, k, rope)
        if cache is not None:
            k, v = cache.extend(k, v)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, hd)
        return F.linear(out.transpose(1, 2).reshape(B, T, self.inner), self.out_proj.weight, self.out_proj.bias)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """Attention on projected heads (B, H, T, hd) -> merged heads (B, T, H hd)."""
        dropout_p = self.dropout if self.training else 0.0
        if self._recorders:
            # Recording needs the weights, which only the reference path exposes.
            mask = _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device, q.dtype)
            out, weights = _reference_attention(q, k, v, mask, dropout_p, self.head_dim**-0.5)
            for recorder in self._recorders:
                recorder.append(weights.detach())
        else:
            out = scaled_dot_product_attention(q, k, v, mask, causal=causal, dropout_p=dropout_p)
        B, H, T, hd = out.shape
        return out.transpose(1, 2).reshape(B, T, H * hd)  # (B, T, D)
