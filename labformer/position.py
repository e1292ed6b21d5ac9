"""Position encodings: attention alone is blind to order (Part 1), so each token gets its position added.

Two sinusoidal tables — Vaswani et al.'s, where dimensions 2j and 2j+1 share the frequency
10000^(-2j/d), and the lab's variant, where each dimension i has its own frequency 10000^(-i/d) —
and a learned embedding.

Beyond the lab: rotary position embeddings (RoPE, Su et al. 2021), which add nothing to the tokens but
rotate each head's queries and keys by angles proportional to their positions, so that a score depends
only on how far apart the query and the key are (:class:`RotaryEmbedding`, :func:`apply_rotary`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "LearnedPositionEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "apply_rotary",
    "sinusoidal_encoding",
]

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


class RotaryEmbedding(nn.Module):
    """The rotations of rotary position embeddings (RoPE) for heads of ``head_dim`` dimensions.

    Dimensions 2j and 2j+1 of a head form a pair, read as the complex number x[2j] + i·x[2j+1] and turned
    by the angle position · base^(-2j/head_dim) (RoFormer's layout). Since rotations compose, the score
    of a query at position p and a key at position s depends only on p - s: keys cached at any position
    stay valid, and a decoding window can slide by one token with no recomputation.

    Args:
        head_dim: dimensions per head; must be even.
        base: the wavelength scale.

    Example:
        >>> RotaryEmbedding(16)(8).shape  # one complex rotation per position and pair
        torch.Size([8, 8])
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim <= 0 or head_dim % 2:
            raise ValueError(f"rotary embeddings need an even, positive head dimension; got {head_dim}")
        inverse = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
        self.register_buffer("inverse_frequency", inverse.float(), persistent=False)

    def forward(self, length: int, offset: int | Tensor = 0) -> Tensor:
        """e^(i·angle) of positions offset … offset + length - 1, complex (T, hd/2); for (B, T) positions
        ``offset``, (B, 1, T, hd/2) (one row of positions per sequence, every head)."""
        if isinstance(offset, Tensor):
            if offset.dim() != 2 or offset.shape[1] != length:
                raise ValueError(f"positions must have shape (batch, {length}); got {tuple(offset.shape)}")
            position = offset[:, None, :].to(self.inverse_frequency)  # (B, 1, T)
        else:
            device, dtype = self.inverse_frequency.device, self.inverse_frequency.dtype
            position = torch.arange(offset, offset + length, device=device, dtype=dtype)
        angles = position[..., None] * self.inverse_frequency  # (…, T, hd/2)
        return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: Tensor, rotation: Tensor) -> Tensor:
    """Turns each pair (x[..., 2j], x[..., 2j+1]) of ``x`` (B, H, T, hd), as a complex number, by
    ``rotation`` (T, hd/2) or (B, 1, T, hd/2) (from :class:`RotaryEmbedding`): one complex product,
    forward and backward, where the real form takes about seven elementwise operations."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # no complex bfloat16
    pairs = torch.view_as_complex(work.unflatten(-1, (-1, 2)))  # (B, H, T, hd/2), a view when it can be
    turned = torch.view_as_real(pairs * rotation.to(pairs.dtype)).flatten(-2)
    return turned.to(x.dtype)


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
