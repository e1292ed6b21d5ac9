"""Parts 1–2 of the lab: scaled dot-product attention and multi-head attention.

Masks follow one convention everywhere: a boolean mask is True where a query *may attend* to a key
(as in the lab and in :func:`torch.nn.functional.scaled_dot_product_attention`); a float mask is
added to the scores. A query row with nothing to attend to returns zeros, never NaN, in the output
and in the gradient.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionHead",
    "KVCache",
    "ConcatHeadsAttention",
    "MultiHeadAttention",
    "attention_weights",
    "merge_masks",
    "record_attention",
    "scaled_dot_product_attention",
]

# Which core runs on CPU (measured here, benchmarks/attention.py): when gradients are needed the fused
# kernel wins at every size (its backward is 2-4x faster than autograd through matmul-softmax-matmul,
# even at 17 tokens); for inference below about 48 keys the plain core is faster (the fused kernel's
# tiling and set-up do not pay off on tiny score matrices), above it the fused kernel wins.
# On CUDA the fused kernels win everywhere.
FUSED_MIN_KEYS_CPU = 48


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> None:
    """Shapes and dtypes of the functional form; the same checks with and without gradients, on every path."""
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(
            f"q, k and v need at least 2 dimensions (..., tokens, dim); got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise ValueError(f"q, k and v must have one floating dtype; got {q.dtype}, {k.dtype} and {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension; got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of tokens (dim -2); got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if mask is not None:
        _check_mask_dtype(mask)
        target = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
        try:
            shape = torch.broadcast_shapes(mask.shape, target)
        except RuntimeError:
            shape = None
        # Only (T, S) or the scores' full rank: a mask of another rank would be aligned from the right,
        # silently giving its first dimension another meaning (e.g. batch read as heads).
        if shape != target or mask.dim() not in (2, len(target)):
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not fit the scores' shape {target} (..., queries, keys): "
                f"expected (queries, keys) = {target[-2:]} or {len(target)} dimensions, each equal or 1"
            )


def _check_mask_dtype(mask: Tensor) -> None:
    """Masks are boolean (True = may attend) or floating (added to the scores); integers are refused, since
    a 0/1 integer mask added to the scores would silently mask nothing."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(
            f"mask must be boolean (True = may attend) or floating (added to the scores); got dtype {mask.dtype}"
        )


def _causal_mask(num_queries: int, num_keys: int, device: torch.device) -> Tensor:
    """(T, S) boolean, True where key j <= query i (top-left aligned, as in PyTorch)."""
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril()


def _restrict(mask: Tensor | None, allowed: Tensor) -> Tensor:
    """Narrows ``mask`` (boolean, float or None) to where the boolean ``allowed`` is True."""
    if mask is None:
        return allowed
    if mask.dtype == torch.bool:
        return mask & allowed
    return mask.masked_fill(~allowed, float("-inf"))


def _scores_mask(
    mask: Tensor | None, causal: bool, num_queries: int, num_keys: int, device: torch.device
) -> Tensor | None:
    """Folds the causal mask into ``mask``; returns a boolean or float mask, or None."""
    return _restrict(mask, _causal_mask(num_queries, num_keys, device)) if causal else mask


def merge_masks(mask: Tensor | None, key_mask: Tensor | None) -> Tensor | None:
    """Combines an attention mask with a (B, S) key mask (True = real token, False = padding).

    Returns a mask broadcastable to (B, H, T, S): boolean if both are boolean, else float.
    """
    if key_mask is None:
        return mask
    if key_mask.dtype != torch.bool or key_mask.dim() != 2:
        raise ValueError(
            f"key_mask must be a boolean tensor of shape (batch, keys); got dtype {key_mask.dtype} "
            f"and shape {tuple(key_mask.shape)}"
        )
    return _restrict(mask, key_mask[:, None, None, :])  # (B, 1, 1, S)


def _masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last dimension where fully masked rows give zeros (and zero gradients)."""
    if mask is None or scores.shape[-1] == 0:  # no keys: an empty (..., T, 0) matrix, nothing to mask
        return scores.softmax(-1)
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask
    # A row whose every score is -inf would give 0/0 = NaN: give it 0 scores, then zero its weights.
    dead = scores.amax(-1, keepdim=True) == float("-inf")
    if not dead.any():
        return scores.softmax(-1)
    return scores.masked_fill(dead, 0.0).softmax(-1).masked_fill(dead, 0.0)


def attention_weights(
    q: Tensor,
    k: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """The attention matrix ``softmax(q kᵀ · scale)`` with masking.

    Args:
        q: queries (..., T, D).
        k: keys (..., S, D).
        mask: boolean (True = may attend) or floating (added to the scores), of shape (T, S) or with the
            scores' rank (..., T, S), each dimension equal or 1.
        causal: query i only attends keys j <= i.
        scale: multiplies the scores; default 1/√D.

    Returns:
        (..., T, S) weights; each row sums to 1, or is all zeros if nothing may be attended.

    Example:
        >>> attention_weights(torch.randn(2, 4, 8), torch.randn(2, 6, 8)).shape
        torch.Size([2, 4, 6])
    """
    _check_inputs(q, k, k, mask)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)  # (..., T, S)
    return _masked_softmax(scores, _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device))


def _reference_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, scale: float
) -> tuple[Tensor, Tensor]:
    """The readable path: matmul, mask, softmax, (dropout), matmul. Returns (output, weights)."""
    # Scale q (T x D numbers), not the scores (T x S): cheaper whenever S > D, as in most layers.
    weights = _masked_softmax((q * scale) @ k.transpose(-2, -1), mask)  # (..., T, S)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights


def _use_fused(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> bool:
    if k.shape[-2] == 0:  # no keys: the plain path returns zeros (and zero gradients) on every device
        return False
    if q.is_cuda:
        return True
    # The fused CPU kernel gives all -inf float rows NaN; keep float masks on the reference path.
    if mask is not None and mask.dtype != torch.bool:
        return False
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return True
    return k.shape[-2] >= FUSED_MIN_KEYS_CPU


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """``softmax(q kᵀ / √D) v`` (Vaswani et al., 2017), with masks and dropout on the weights.

    Args:
        q: queries (..., T, D).
        k: keys (..., S, D).
        v: values (..., S, Dv).
        mask: boolean (True = may attend) or floating (added to the scores; cast to q's dtype), of shape
            (T, S) or with the scores' rank (..., T, S), each dimension equal or 1. A query row with nothing
            to attend to (also when S = 0) returns zeros, never NaN. Integer masks are refused.
        causal: query i only attends keys j <= i (combined with ``mask`` if both are given).
        dropout_p: dropout probability on the attention weights (pass 0 in evaluation).
        scale: multiplies the scores; default 1/√D.

    Returns:
        (..., T, Dv).

    Training and large score matrices run PyTorch's fused kernel, small inference calls the plain
    path (see ``FUSED_MIN_KEYS_CPU``); both give the same values and gradients.

    Example:
        >>> scaled_dot_product_attention(torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 3)).shape
        torch.Size([2, 4, 3])
    """
    _check_inputs(q, k, v, mask)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1); got {dropout_p}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)  # a float mask is added to scores of q's dtype (the fused kernel requires it)
    if _use_fused(q, k, v, mask):
        if causal and mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)
        mask = _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    mask = _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device)
    return _reference_attention(q, k, v, mask, dropout_p, scale)[0]


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


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first, with the parameter layout of ``torch.nn.MultiheadAttention``.

    Args:
        dim: model dimension D (queries and output).
        num_heads: number of heads H; must divide ``dim``.
        dropout: dropout on the attention weights.
        bias: add biases to the input and output projections.
        kdim: dimension of the keys (default ``dim``).
        vdim: dimension of the values (default ``dim``).

    The state dict has exactly the keys and shapes of ``torch.nn.MultiheadAttention(dim, num_heads,
    bias=bias, kdim=kdim, vdim=vdim, batch_first=True)``, so weights load both ways.

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
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_heads", num_heads), ("kdim", kdim), ("vdim", vdim)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.kdim, self.vdim = kdim or dim, vdim or dim
        self.dropout = dropout
        self.same_dims = self.kdim == dim and self.vdim == dim
        if self.same_dims:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(dim, dim))
            self.k_proj_weight = nn.Parameter(torch.empty(dim, self.kdim))
            self.v_proj_weight = nn.Parameter(torch.empty(dim, self.vdim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim)) if bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)
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
        B, T, D = query.shape
        S = key.shape[1]
        H, hd = self.num_heads, self.head_dim
        bias = self.in_proj_bias
        if self.same_dims and key is query and value is query:
            qkv = F.linear(query, self.in_proj_weight, bias)  # (B, T, 3D)
            q, k, v = qkv.view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)
            return q, k, v
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

        Returns:
            (B, T, dim). A query with nothing to attend to gets the output projection's bias.
        """
        key = query if key is None else key
        value = key if value is None else value
        if cache is not None and not (key is query and value is query):
            raise ValueError("a KVCache can only be used for self-attention (key and value = query)")
        self._check_inputs(query, key, value, None if cache is not None else key_mask)
        q, k, v = self._project(query, key, value)  # (B, H, T|S, hd)
        mask = merge_masks(_mask_for_heads(mask, query.shape[0]), key_mask)
        if cache is not None:
            past = len(cache)
            k, v = cache.extend(k, v)
            if causal and past:
                # Bottom-right aligned: new token i sits at position past + i.
                tril = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(past)
                mask, causal = _restrict(mask, tril), False
        return self.out_proj(self._attend(q, k, v, mask, causal))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """Attention on projected heads (B, H, T, hd) -> merged heads (B, T, D)."""
        dropout_p = self.dropout if self.training else 0.0
        if self._recorders:
            # Recording needs the weights, which only the reference path exposes.
            mask = _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device)
            out, weights = _reference_attention(q, k, v, mask, dropout_p, self.head_dim**-0.5)
            for recorder in self._recorders:
                recorder.append(weights.detach())
        else:
            out = scaled_dot_product_attention(q, k, v, mask, causal=causal, dropout_p=dropout_p)
        B, H, T, hd = out.shape
        return out.transpose(1, 2).reshape(B, T, H * hd)  # (B, T, D)


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
        num_heads: number of heads; each has size ``dim // num_heads``.
        dropout: dropout on the attention weights and after the projection.
        bias: biases on all projections.
    """

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.heads = nn.ModuleList(
            AttentionHead(dim, dim // num_heads, dropout=dropout, bias=bias) for _ in range(num_heads)
        )
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """x (B, T, D) -> (B, T, D)."""
        heads = [head(x, mask=mask, causal=causal) for head in self.heads]  # H x (B, T, hd)
        return self.dropout(self.proj(torch.cat(heads, dim=-1)))

    @classmethod
    def from_multi_head(cls, mha: MultiHeadAttention) -> ConcatHeadsAttention:
        """The teaching form of ``mha`` (self-attention weights), computing the same function."""
        bias = mha.in_proj_bias is not None
        out = cls(mha.dim, mha.num_heads, bias=bias).to(mha.out_proj.weight)
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
