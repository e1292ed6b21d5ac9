"""Parts 3–4 of the lab: the feed-forward block, encoder layers (post- and pre-norm) and the encoder
stack; the decoder with cross-attention (Extra) is in :mod:`labformer.decoder`.

Each module's state dict has exactly the keys of its PyTorch counterpart
(``torch.nn.TransformerEncoderLayer``, ``TransformerEncoder``, ``TransformerDecoderLayer``,
``TransformerDecoder``, all ``batch_first=True``), so weights move both ways.
Masks: boolean True = may attend, float = added to the scores, of shape (T, S), (B, T, S) per batch
item or (B, H, T, S) per head (see :meth:`MultiHeadAttention.forward`); ``key_mask`` (B, S) True = real
token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer.attention import KVCache, MultiHeadAttention
from labformer.config import require_positive_ints

__all__ = ["Encoder", "EncoderLayer", "FeedForward", "feed_forward_precision"]

Activation = Literal["relu", "gelu", "relu2"]


def relu_squared(x: Tensor) -> Tensor:
    """ReLU(x)² (So et al. 2021, "Primer"), beyond the lab: as cheap as ReLU, smoother at 0."""
    return F.relu(x).square()


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu, "relu2": relu_squared}

# Up to this many values, ATen's own GELU kernel beats oneDNN's (2 µs against 12 µs for one token's 1,536
# hidden values on a Xeon with AVX-512; equal near 16 k values, oneDNN ahead above).
_SMALL_GELU = 16384


def _small_activation(activation: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``activation(x)`` on the fast path, where x is often one token per sequence (generation, batch-1
    prediction).

    For a float32 GELU torch calls oneDNN, whose set-up costs about 10 µs a call at any size: in a
    decoding step of the lab's GPT that was a tenth of the time. For small tensors this switches oneDNN
    off for the one call, so ATen's vectorised kernel runs (the switch is torch's process-wide flag,
    restored at once). Both compute the exact (erf) GELU; they differ by an ulp or so. Traced (compile,
    ONNX export) it is plain ``activation(x)``: a graph keeps no flag and no size test.
    """
    traced = torch.compiler.is_compiling() or not isinstance(x.numel(), int)  # compile, export: symbolic sizes
    if activation is not F.gelu or traced or x.numel() > _SMALL_GELU or not torch.backends.mkldnn.enabled:
        return activation(x)
    torch.backends.mkldnn.enabled = False
    try:
        return F.gelu(x)
    finally:
        torch.backends.mkldnn.enabled = True


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {name!r}")
    return _ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(D → mlp_dim), activation, dropout, Linear(mlp_dim → D).

    "Attention communicates, the feed-forward block thinks": it runs on each token separately.
    The attribute names (``linear1``, ``dropout``, ``linear2``) are PyTorch's; the encoder and decoder
    layers hold the same three under the same names (their ``_ff_block``), as torch's layers do.

    Forward: x (B, T, D) -> (B, T, D).
    """

    def __init__(self, dim: int, mlp_dim: int, *, dropout: float = 0.0, activation: Activation = "relu") -> None:
        super().__init__()
        require_positive_ints(dim=dim, mlp_dim=mlp_dim)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(mlp_dim, dim)
        self.activation = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class _Layer(nn.Module):
    """The parts of an encoder or decoder layer, created in the order of torch's layers (so state dicts
    list the same keys in the same order): self-attention, [cross-attention], feed-forward, norms, dropouts."""

    cross_attention = False

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        dropout: float = 0.0,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        qk_norm: bool = False,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        require_positive_ints(dim=dim, num_heads=num_heads, mlp_dim=mlp_dim)
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=dropout, qk_norm=qk_norm, head_dim=head_dim)
        if self.cross_attention:
            self.multihead_attn = MultiHeadAttention(dim, num_heads, dropout=dropout, head_dim=head_dim)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(mlp_dim, dim)
        blocks = 3 if self.cross_attention else 2
        for i in range(1, blocks + 1):
            setattr(self, f"norm{i}", nn.LayerNorm(dim, eps=layer_norm_eps))
        for i in range(1, blocks + 1):
            setattr(self, f"dropout{i}", nn.Dropout(dropout))
        self.activation = _activation(activation)
        self.norm_first = norm_first
        self.ff_dtype: torch.dtype | None = None  # see feed_forward_precision

    def _sa_block(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        rope: Tensor | None = None,
    ) -> Tensor:
        """The self-attention branch (without its residual): dropout(MHA(x))."""
        attended = self.self_attn(x, mask=mask, key_mask=key_mask, causal=causal, cache=cache, rope=rope)
        return self.dropout1(attended)

    def _ff_block(self, x: Tensor) -> Tensor:
        """The feed-forward branch (without its residual): dropout(linear2(dropout(act(linear1(x)))))."""
        last_dropout = self.dropout3 if self.cross_attention else self.dropout2
        if self.ff_dtype is None:
            return last_dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        with torch.autocast(x.device.type, dtype=self.ff_dtype):
            out = last_dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return out.to(x.dtype)


class EncoderLayer(_Layer):
    """Self-attention then feed-forward, each wrapped in a residual connection and a LayerNorm.

    Post-norm (``norm_first=False``, Vaswani et al.): x = LN(x + MHA(x)); x = LN(x + FFN(x)).
    Pre-norm (``norm_first=True``, the lab, GPT, ViT): x = x + MHA(LN(x)); x = x + FFN(LN(x)).

    Args:
        dim: model dimension D.
        num_heads: attention heads; must divide ``dim`` unless ``head_dim`` is given.
        mlp_dim: hidden size of the feed-forward block.
        dropout: on the attention weights, inside the feed-forward block and on both residual branches.
        activation: "relu", "gelu" or "relu2" (ReLU², beyond the lab).
        norm_first: pre-norm if True.
        layer_norm_eps: LayerNorm epsilon.
        qk_norm: RMS-normalised queries and keys (see :class:`MultiHeadAttention`).
        head_dim: each self-attention head's size (default ``dim // num_heads``; see
            :class:`MultiHeadAttention`).

    Example:
        >>> EncoderLayer(64, 8, 128)(torch.randn(2, 17, 64)).shape
        torch.Size([2, 17, 64])
    """

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        rope: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, D) -> (B, T, D). ``cache``, ``rope``: see :meth:`MultiHeadAttention.forward`."""
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), mask, key_mask, causal, cache, rope)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, mask, key_mask, causal, cache, rope))
        return self.norm2(x + self._ff_block(x))

    def fast(self, x: Tensor, cache: KVCache | None = None, rope: Tensor | None = None) -> Tensor:
        """The layer in evaluation without masks, the fast path: x (B, T, D) -> (B, T, D).

        Every token attends every token (no cache), or one new token attends its cache (generation); see
        :meth:`MultiHeadAttention.fast`. No checks, masks or dropout; ``forward`` is the reference.
        """
        attend = self.self_attn.fast
        if self.norm_first:
            x = x + attend(_layer_norm(self.norm1, x), cache, rope)
            return x + self._ff_step(_layer_norm(self.norm2, x))
        x = _layer_norm(self.norm1, x + attend(x, cache, rope))
        return _layer_norm(self.norm2, x + self._ff_step(x))

    def _ff_step(self, x: Tensor) -> Tensor:
        """The feed-forward branch in evaluation (no dropout), with the weights called directly."""
        if self.ff_dtype is not None:  # the reference, in the chosen precision
            return self._ff_block(x)
        hidden = _small_activation(self.activation, F.linear(x, self.linear1.weight, self.linear1.bias))
        return F.linear(hidden, self.linear2.weight, self.linear2.bias)


def feed_forward_precision(module: nn.Module, dtype: torch.dtype | None) -> None:
    """Runs the feed-forward blocks of every encoder/decoder layer in ``module`` under ``dtype`` autocast
    (e.g. torch.bfloat16), the rest of the layer in its own precision; None = as the layer's weights.

    On CPUs with AMX, bf16 only in the GPT's feed-forward blocks trains faster than float32 end to end,
    where full bf16 autocast is slower (``benchmarks/amp.py``): ``--amp bf16-ff``.
    """
    for layer in module.modules():
        if isinstance(layer, _Layer):
            layer.ff_dtype = dtype


def _layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class _Stack(nn.Module):
    """``num_layers`` layers of ``layer_class`` (each with its own weights) and an optional final LayerNorm.

    State-dict keys ``layers.<i>.…`` and ``norm.…``, as in torch's TransformerEncoder/Decoder.
    """

    layer_class: type[nn.Module]

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        num_layers: int,
        *,
        dropout: float = 0.0,
        activation: Activation = "relu",
        norm_first: bool = False,
        final_norm: bool = False,
        layer_norm_eps: float = 1e-5,
        qk_norm: bool = False,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        require_positive_ints(num_layers=num_layers)
        self.layers = nn.ModuleList(
            self.layer_class(
                dim,
                num_heads,
                mlp_dim,
                dropout=dropout,
                activation=activation,
                norm_first=norm_first,
                layer_norm_eps=layer_norm_eps,
                qk_norm=qk_norm,
                head_dim=head_dim,
            )  # fmt: skip
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim, eps=layer_norm_eps) if final_norm else None

    def _final_norm(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.norm is not None else x


class Encoder(_Stack):
    """A stack of identical :class:`EncoderLayer` s, optionally followed by a final LayerNorm.

    Args:
        dim, num_heads, mlp_dim, dropout, activation, norm_first, layer_norm_eps: as for EncoderLayer.
        num_layers: depth.
        final_norm: a LayerNorm after the last layer (needed with pre-norm layers).

    Example:
        >>> Encoder(64, 8, 128, 6, norm_first=True, final_norm=True)(torch.randn(2, 17, 64)).shape
        torch.Size([2, 17, 64])
    """

    layer_class = EncoderLayer

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        caches: list[KVCache] | None = None,
        rope: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, D) -> (B, T, D). ``caches``: one :class:`KVCache` per layer, for decoding; ``rope``: the
        tokens' rotary angles, shared by every layer (see :meth:`MultiHeadAttention.forward`)."""
        for i, layer in enumerate(self.layers):
            cache = caches[i] if caches is not None else None
            x = layer(x, mask=mask, key_mask=key_mask, causal=causal, cache=cache, rope=rope)
        return self._final_norm(x)

    def fast(self, x: Tensor, caches: list[KVCache] | None = None, rope: Tensor | None = None) -> Tensor:
        """Every layer's fast path (:meth:`EncoderLayer.fast`): x (B, T, D) -> (B, T, D), unmasked, or one
        new token per sequence with ``caches``."""
        for i, layer in enumerate(self.layers):
            x = layer.fast(x, caches[i] if caches is not None else None, rope)
        return self._final_norm(x)

    def can_run_fast(self) -> bool:
        """Whether :meth:`fast` computes what ``forward`` would: evaluation, no gradients, nothing recording."""
        return not (self.training or torch.is_grad_enabled()) and not any(
            layer.self_attn._recorders for layer in self.layers
        )
