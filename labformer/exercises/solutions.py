"""The lab's fifteen pieces, answered: the reference every submission is compared with.

Written in the lab's names and signatures ("Laboratoire 8: Transformers"), so that a student's code from
the course and this file are interchangeable. Each piece starts at a ``# %% NAME`` line; the answer
itself lies between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers), which the
student's copy replaces with ``raise NotImplementedError()``.

Where the course's own code disagrees with itself, this file follows the lab's text:
- the encoder layer adds each residual to the raw input (the course's scaffold adds it to the normalised q);
- ``TransformerNLP`` does not add the positions: ``TransformerEncoder`` already does (the course's solution
  adds them twice);
- the causal mask buffer is boolean (the course's scaffold registers a float 0/1 one, which ``~mask``
  cannot negate); the reference head accepts both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# %% simple_attention


def simple_attention(q, k, v):
    """q (1, d), k (n, d), v (n, d) -> (1, d): softmax(q kᵀ / √d) v."""
    ### BEGIN SOLUTION
    d = q.size(-1)
    alpha = F.softmax(q @ k.T / math.sqrt(d), dim=-1)
    return alpha @ v
    ### END SOLUTION


# %% attention_alpha


def attention_alpha(q, k):
    """q (1, d), k (n, d) -> α (1, n): the weights of the query on each key, after the softmax."""
    d = q.size(-1)
    ### BEGIN SOLUTION
    alpha = F.softmax(q @ k.T / math.sqrt(d), dim=-1)
    ### END SOLUTION
    return alpha


# %% scaled_dot_product_attention


def scaled_dot_product_attention(q, k, v, mask=None):
    """q (b, n, d), k (b, n, d), v (b, n, d) -> (b, n, d).

    mask: boolean (n, n), True = may attend; False entries get -inf before the softmax.
    """
    ### BEGIN SOLUTION
    attention = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    ### END SOLUTION
    if mask is not None:
        ### BEGIN SOLUTION
        attention = attention.masked_fill(mask == 0, float("-inf"))
        ### END SOLUTION
    ### BEGIN SOLUTION
    return F.softmax(attention, dim=-1) @ v
    ### END SOLUTION


# %% masked_attention_weights


def masked_attention_weights(q, k, mask):
    """q (b, n, d), k (b, n, d), mask (n, n) boolean -> the attention matrix (b, n, n) after the softmax."""
    ### BEGIN SOLUTION
    attention = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    attention = attention.masked_fill(mask == 0, float("-inf"))
    softmax = F.softmax(attention, dim=-1)
    ### END SOLUTION
    return softmax


# %% position_encoding


def position_encoding(n_keys: int, dimension: int, device: torch.device = torch.device("cpu")):  # noqa: B008
    """-> (1, n_keys, dimension): sin(pos / 10000^(i/d)) on even i, cos on odd i."""
    pos = torch.arange(n_keys, dtype=torch.float, device=device).reshape(1, -1, 1)
    dim = torch.arange(dimension, dtype=torch.float, device=device).reshape(1, 1, -1)
    ### BEGIN SOLUTION
    phase = pos / (10000 ** (dim / dimension))
    ### END SOLUTION
    return torch.where(dim.long() % 2 == 0, torch.sin(phase), torch.cos(phase))


# %% add_positions


def add_positions(q, k):
    """q (1, n, d), k (1, n, d) -> (q, k) each with position_encoding(n, d) added."""
    _, n, d = q.shape
    ### BEGIN SOLUTION
    q = q + position_encoding(n, d)
    k = k + position_encoding(n, d)
    ### END SOLUTION
    return q, k


# %% dot_products


def dot_products(q, k):
    """q (n, d), k (n, d) -> (attention, scaled_attention), each (n, n): q kᵀ, and q kᵀ / √d."""
    dimension = q.size(-1)
    ### BEGIN SOLUTION
    attention = q @ k.T
    scaled_attention = attention * dimension**-0.5
    ### END SOLUTION
    return attention, scaled_attention


# %% softmaxes


def softmaxes(x, dimension=256):
    """x (n,) -> (low_variance_softmax, high_variance_softmax): softmax(x) and softmax(x · √dimension)."""
    ### BEGIN SOLUTION
    low_variance_softmax = torch.softmax(x, dim=-1)
    high_variance_softmax = torch.softmax(x * math.sqrt(dimension), dim=-1)
    ### END SOLUTION
    return low_variance_softmax, high_variance_softmax


# %% AttentionHead


class AttentionHead(nn.Module):
    def __init__(self, dim_embed: int, head_size: int, dropout: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.q_proj = nn.Linear(dim_embed, head_size, bias=False)
        self.k_proj = nn.Linear(dim_embed, head_size, bias=False)
        self.v_proj = nn.Linear(dim_embed, head_size, bias=False)
        ### END SOLUTION
        self.dropout = nn.Dropout(dropout)

    def forward(self, q, k, v, mask=None):
        """q, k, v (B, T, dim_embed) -> (B, T, head_size); mask (block, block), True = may attend."""
        B, T, C = q.shape
        ### BEGIN SOLUTION
        q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        attention = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if mask is not None:
            attention = attention.masked_fill(mask[:T, :T] == 0, float("-inf"))
        softmax = F.softmax(attention, dim=-1)
        ### END SOLUTION
        softmax = self.dropout(softmax)
        ### BEGIN SOLUTION
        return softmax @ v
        ### END SOLUTION


# %% MultiHeadAttention


class MultiHeadAttention(nn.Module):
    def __init__(self, num_heads: int, dim_embed: int, head_size: int, dropout: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.heads = nn.ModuleList([AttentionHead(dim_embed, head_size, dropout) for _ in range(num_heads)])
        ### END SOLUTION
        self.fc = nn.Linear(num_heads * head_size, dim_embed)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q, k, v, mask=None):
        """q, k, v (B, T, dim_embed) -> (B, T, dim_embed)."""
        out = torch.cat([h(q, k, v, mask) for h in self.heads], dim=-1)
        ### BEGIN SOLUTION
        return self.dropout(self.fc(out))
        ### END SOLUTION


# %% FeedForward


class FeedForward(nn.Module):
    def __init__(self, dim_model: int, dropout: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.ffn = nn.Sequential(
            nn.Linear(dim_model, 4 * dim_model),
            nn.ReLU(),
            nn.Linear(4 * dim_model, dim_model),
            nn.Dropout(dropout),
        )
        ### END SOLUTION

    def forward(self, x):
        """x (B, T, dim_model) -> (B, T, dim_model)."""
        return self.ffn(x)


# %% TransformerEncoderLayer


class TransformerEncoderLayer(nn.Module):
    def __init__(self, dim_model: int, num_head: int, dropout: float):
        super().__init__()
        head_size = dim_model // num_head
        self.attention = MultiHeadAttention(num_head, dim_model, head_size, dropout)
        self.ffn = FeedForward(dim_model, dropout)
        self.norm1_q = nn.LayerNorm(dim_model)
        self.norm1_k = nn.LayerNorm(dim_model)
        self.norm1_v = nn.LayerNorm(dim_model)
        self.norm2 = nn.LayerNorm(dim_model)

    def forward(self, q, k, v, mask=None):
        """q, k, v (B, T, dim_model) -> (B, T, dim_model), pre-norm: q + MHA(LN(q), LN(k), LN(v)), then + FFN."""
        ### BEGIN SOLUTION
        q = q + self.attention(self.norm1_q(q), self.norm1_k(k), self.norm1_v(v), mask)
        ### END SOLUTION
        q = q + self.ffn(self.norm2(q))
        return q


# %% TransformerEncoder


class TransformerEncoder(nn.Module):
    def __init__(self, num_layers: int, dim_model: int, num_heads: int, out_size: int, dropout: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.layers = nn.ModuleList([TransformerEncoderLayer(dim_model, num_heads, dropout) for _ in range(num_layers)])
        ### END SOLUTION
        self.norm = nn.LayerNorm(dim_model)
        self.fc = nn.Linear(dim_model, out_size)

        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, x, mask=None):
        """x (B, T, dim_model) -> (B, T, out_size); mask (block, block), True = may attend."""
        batch_size, num_tokens, dim = x.shape
        ### BEGIN SOLUTION
        x = x + position_encoding(num_tokens, dim, x.device)
        for layer in self.layers:
            x = layer(x, x, x, mask)
        ### END SOLUTION
        x = self.norm(x)
        x = self.fc(x)
        return x


# %% TransformerNLP


class TransformerNLP(nn.Module):
    def __init__(
        self,
        num_layers: int,
        dim_model: int,
        num_heads: int,
        out_size: int,
        dropout: float,
        vocab_size: int,
        block_size: int,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim_model)
        self.transformer = TransformerEncoder(num_layers, dim_model, num_heads, out_size, dropout)
        # True = may attend: each character sees itself and the characters before it
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))

    def forward(self, x):
        """x (B, T) character indices, T <= block_size -> logits (B, T, out_size)."""
        B, T = x.shape
        ### BEGIN SOLUTION
        x = self.embedding(x)
        # no positions here: TransformerEncoder adds them
        x = self.transformer(x, self.mask)
        ### END SOLUTION
        return x
