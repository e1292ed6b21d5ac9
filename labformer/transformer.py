"""The encoder–decoder of "Attention is all you need": an :class:`~labformer.encoder.Encoder` reads the source,
a :class:`~labformer.decoder.Decoder` writes the target, attending causally to itself (self-attention)
and to the encoder's output, the *memory* (cross-attention).

The state dict has exactly the keys of ``torch.nn.Transformer(batch_first=True)`` (``encoder.layers.*``,
``encoder.norm.*``, ``decoder.layers.*``, ``decoder.norm.*``), so weights move both ways; both stacks end
with a LayerNorm, as torch's do.
"""

from __future__ import annotations

from torch import Tensor, nn

from labformer.decoder import Decoder
from labformer.encoder import Activation, Encoder

__all__ = ["Transformer"]


class Transformer(nn.Module):
    """Encoder + decoder, batch first.

    Args:
        dim: model dimension D.
        num_heads: attention heads; must divide ``dim``.
        num_encoder_layers, num_decoder_layers: the two depths.
        mlp_dim: hidden size of the feed-forward blocks.
        dropout, activation, norm_first, layer_norm_eps: as for :class:`~labformer.encoder.EncoderLayer`.

    Example:
        >>> model = Transformer(32, 4, 2, 2, 64)
        >>> model(torch.randn(2, 7, 32), torch.randn(2, 5, 32)).shape
        torch.Size([2, 5, 32])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_encoder_layers: int,
        num_decoder_layers: int,
        mlp_dim: int,
        *,
        dropout: float = 0.0,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        shared = dict(dropout=dropout, activation=activation, norm_first=norm_first, layer_norm_eps=layer_norm_eps)
        self.encoder = Encoder(dim, num_heads, mlp_dim, num_encoder_layers, final_norm=True, **shared)
        self.decoder = Decoder(dim, num_heads, mlp_dim, num_decoder_layers, final_norm=True, **shared)

    def encode(self, source: Tensor, source_key_mask: Tensor | None = None) -> Tensor:
        """source (B, S, D) -> memory (B, S, D); ``source_key_mask`` (B, S), True = real token."""
        return self.encoder(source, key_mask=source_key_mask)

    def decode(self, target: Tensor, memory: Tensor, source_key_mask: Tensor | None = None) -> Tensor:
        """target (B, T, D), causal, attending to ``memory`` (B, S, D) -> (B, T, D)."""
        return self.decoder(target, memory, causal=True, memory_key_mask=source_key_mask)

    def forward(self, source: Tensor, target: Tensor, source_key_mask: Tensor | None = None) -> Tensor:
        """source (B, S, D), target (B, T, D) -> (B, T, D): each target position sees the target up to
        itself and every real source token. ``source_key_mask`` (B, S): True = real token, False = padding
        (torch's ``src_key_padding_mask`` and ``memory_key_padding_mask`` are its negation)."""
        return self.decode(target, self.encode(source, source_key_mask), source_key_mask)
