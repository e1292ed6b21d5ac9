"""Position encodings: attention alone is blind to order (Part 1), so each token gets its position added.

Two sinusoidal tables — Vaswani et al.'s, where dimensions 2j and 2j+1 share the frequency
10000^(-2j/d), and the lab's variant, where each dimension i has its own frequency 10000^(-i/d) —
and a learned embedding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["LearnedPositionEmbedding", "SinusoidalPositionEncoding", "sinusoidal_encoding"]

Variant = Literal["vaswani", "lab"]


def sinusoidal_encoding(num_positions: int, dim: int, *, variant: Variant = "vaswani", base: float = 10000.0) -> Tensor:
    """The (num_positions, dim) sinusoidal table: sin on even dimensions, cos on odd ones.

    Args:
        num_positions: number of positions n.
        dim: model dimension d.
        variant: "vaswani": PE[p, 2j] = sin(p / base^(2j/d)), PE[p, 2j+1] = cos(p / base^(2j/d));
            "lab": PE[p, i] = sin or cos of p / base^(i/d) (the lab notebook's code).
        base: the wavelength scale.

    Example:
        >>> sinusoidal_encoding(64, 128).shape
        torch.Size([64, 128])
    """
    if num_positions <= 0 or dim <= 0:
        raise ValueError(f"num_positions and dim must be positive; got {num_positions} and {dim}")
    if variant not in ("vaswani", "lab"):
        raise ValueError(f"variant must be 'vaswani' or 'lab'; got {variant!r}")
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (n, 1)
    index = torch.arange(dim, dtype=torch.float64)  # (d,)
    exponent = index if variant == "lab" else index - index % 2  # Vaswani: 2j for both 2j and 2j+1
    phase = position / base ** (exponent / dim)  # (n, d)
    table = torch.where(index % 2 == 0, phase.sin(), phase.cos())
    return table.float()


class SinusoidalPositionEncoding(nn.Module):
    """Adds a fixed sinusoidal table to (B, T, D) inputs; no parameters.

    Args:
        num_positions: the largest number of tokens.
        dim: model dimension D.
        variant: "vaswani" or "lab" (see :func:`sinusoidal_encoding`).
    """

    def __init__(self, num_positions: int, dim: int, *, variant: Variant = "vaswani") -> None:
        super().__init__()
        self.num_positions = num_positions
        self.register_buffer("table", sinusoidal_encoding(num_positions, dim, variant=variant), persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x (B, T, D) -> x + PE[offset : offset + T]; or x + PE[offset] for (B, T) positions ``offset``."""
        return x + _positions(self.table, x.shape[1], offset, self.num_positions).to(x.dtype)


class LearnedPositionEmbedding(nn.Module):
    """Adds a learned (num_positions, D) table, initialised N(0, 0.02), to (B, T, D) inputs."""

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.table = nn.Parameter(torch.randn(num_positions, dim) * 0.02)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x (B, T, D) -> x + table[offset : offset + T]; or x + table[offset] for (B, T) positions ``offset``."""
        return x + _positions(self.table, x.shape[1], offset, self.num_positions)


def _positions(table: Tensor, length: int, offset: int | Tensor, num_positions: int) -> Tensor:
    """table[offset : offset + length] (T, D), or table[offset] (B, T, D) for a tensor of positions (B, T)."""
    if isinstance(offset, Tensor):
        if offset.dim() != 2 or offset.shape[1] != length:
            raise ValueError(f"positions must have shape (batch, {length}); got {tuple(offset.shape)}")
        if offset.numel() and not 0 <= int(offset.min()) <= int(offset.max()) < num_positions:
            low, high = int(offset.min()), int(offset.max())
            raise ValueError(f"positions must lie in 0..{num_positions - 1}; got {low}..{high}")
        return table[offset]
    if offset + length > num_positions:
        raise ValueError(f"positions {offset}..{offset + length - 1} exceed the encoding's {num_positions} positions")
    return table[offset : offset + length]
