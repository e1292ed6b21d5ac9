"""Part 1 of the lab: scaled dot-product attention (the function), its masks, and the plain and fused paths.

Masks follow one convention everywhere: a boolean mask is True where a query *may attend* to a key
(as in the lab and in :func:`torch.nn.functional.scaled_dot_product_attention`); a float mask is
added to the scores. A query row with nothing to attend to returns zeros, never NaN, in the output
and in the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention_weights", "merge_masks", "scaled_dot_product_attention"]

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
    mask: Tensor | None,
    causal: bool,
    num_queries: int,
    num_keys: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> Tensor | None:
    """Folds the causal mask into ``mask``; returns a boolean or float mask (in ``dtype``, the scores'
    dtype, when given: the fused kernel requires it), or None."""
    if mask is not None and mask.is_floating_point() and dtype is not None and mask.dtype != dtype:
        mask = mask.to(dtype)
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
    if _use_fused(q, k, v, mask):
        if causal and mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)
        mask = _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device, q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    mask = _scores_mask(mask, causal, q.shape[-2], k.shape[-2], q.device, q.dtype)
    return _reference_attention(q, k, v, mask, dropout_p, scale)[0]
