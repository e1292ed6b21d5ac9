"""(Extra) of the lab: the decoder layer and stack, with cross-attention over an encoder's ``memory``.

State dicts have exactly the keys of ``torch.nn.TransformerDecoderLayer`` and ``TransformerDecoder``
(``batch_first=True``). Masks as in :mod:`labformer.encoder`.
"""

from __future__ import annotations

from torch import Tensor

from labformer.attention import KVCache
from labformer.encoder import _Layer, _Stack

__all__ = ["Decoder", "DecoderLayer"]


class DecoderLayer(_Layer):
    """Self-attention, cross-attention over an encoder's ``memory``, feed-forward; each residual + LN.

    Args: as for :class:`EncoderLayer`.

    Example:
        >>> DecoderLayer(10, 2, 40)(torch.randn(2, 5, 10), torch.randn(2, 7, 10), causal=True).shape
        torch.Size([2, 5, 10])
    """

    cross_attention = True

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        key_mask: Tensor | None = None,
        memory_key_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """x (B, T, D), memory (B, S, D) -> (B, T, D).

        ``mask``/``key_mask``/``causal`` apply to self-attention, ``memory_mask``/``memory_key_mask``
        to cross-attention (queries from x, keys and values from memory).
        """
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), mask, key_mask, causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_mask)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, mask, key_mask, causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_mask))
        return self.norm3(x + self._ff_block(x))

    def step(
        self, x: Tensor, keys_values: tuple[Tensor, Tensor], cache: KVCache, memory_key_mask: Tensor | None = None
    ) -> Tensor:
        """One decoding step: the new tokens x (B, T, D) after those in ``cache`` (extended in place) attend
        causally to themselves and to the memory's precomputed ``keys_values``
        (:meth:`MultiHeadAttention.memory_keys_values`) -> (B, T, D); the same as :meth:`forward` on the
        whole sequence, for the new positions."""

        def self_block(h: Tensor) -> Tensor:
            return self.dropout1(self.self_attn(h, causal=True, cache=cache))

        def cross_block(h: Tensor) -> Tensor:
            return self.dropout2(self.multihead_attn.attend_memory(h, keys_values, key_mask=memory_key_mask))

        if self.norm_first:
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self_block(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + self._ff_block(x))

    def _mha_block(self, x: Tensor, memory: Tensor, mask: Tensor | None, key_mask: Tensor | None) -> Tensor:
        """The cross-attention branch (without its residual): queries from x, keys and values from memory."""
        return self.dropout2(self.multihead_attn(x, memory, memory, mask=mask, key_mask=key_mask))


class Decoder(_Stack):
    """A stack of :class:`DecoderLayer` s over one shared ``memory``, optionally with a final LayerNorm.

    Args: as for :class:`Encoder`.
    """

    layer_class = DecoderLayer

    def forward(self, x: Tensor, memory: Tensor, **masks: Tensor | bool | None) -> Tensor:
        """x (B, T, D), memory (B, S, D) -> (B, T, D); ``masks`` as for :meth:`DecoderLayer.forward`
        (mask, memory_mask, key_mask, memory_key_mask, causal), the same for every layer."""
        for layer in self.layers:
            x = layer(x, memory, **masks)
        return self._final_norm(x)
