"""Part 5 of the lab: a character-level GPT — the encoder with a causal mask, trained to predict the
next character.

Token ids (B, T) → embedding (B, T, D) + position → pre-norm encoder layers, causal → final LayerNorm
→ linear head (B, T, vocab).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer.attention import KVCache, MultiHeadAttention
from labformer.config import JsonConfig, require_positive_ints, setting
from labformer.encoder import Encoder
from labformer.position import LearnedPositionEmbedding, RotaryEmbedding, SinusoidalPositionEncoding

__all__ = ["GPT", "GPTConfig"]


@dataclass
class GPTConfig(JsonConfig):
    """Hyper-parameters of a :class:`GPT`; stored as JSON next to its weights."""

    vocab_size: int = setting(65, "distinct characters")
    block_size: int = setting(128, "longest context (tokens)")
    dim: int = setting(128, "token dimension D")
    depth: int = setting(4, "layers (decoder blocks: causal self-attention and a feed-forward block)")
    num_heads: int = setting(4, "attention heads; must divide dim")
    mlp_dim: int = setting(512, "hidden size of each feed-forward block (4·D in GPT)")
    dropout: float = setting(0.0, "on embeddings, attention weights and residual branches")
    position: Literal["learned", "sincos", "rope"] = setting(
        "learned", "position encoding of the tokens; rope = rotary, on queries and keys (beyond the lab)"
    )
    tie_weights: bool = setting(True, "the head shares the token embedding matrix")
    activation: Literal["gelu", "relu2"] = setting("gelu", "of the feed-forward blocks; relu2 = ReLU² (beyond the lab)")
    qk_norm: bool = setting(False, "RMS-normalise queries and keys per head (beyond the lab)")
    zero_init: bool = setting(False, "output projections of attention and feed-forward start at zero (beyond the lab)")

    def __post_init__(self) -> None:
        names = ("vocab_size", "block_size", "dim", "depth", "num_heads", "mlp_dim")
        require_positive_ints(**{name: getattr(self, name) for name in names})
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide dim ({self.dim})")
        if self.position not in ("learned", "sincos", "rope"):
            raise ValueError(f"position must be 'learned', 'sincos' or 'rope'; got {self.position!r}")
        if self.position == "rope" and (self.dim // self.num_heads) % 2:
            raise ValueError(f"rope needs an even head dimension; dim {self.dim} / {self.num_heads} heads is odd")
        if self.activation not in ("gelu", "relu2"):
            raise ValueError(f"activation must be 'gelu' or 'relu2'; got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")


class GPT(nn.Module):
    """Character-level GPT with a key/value cache for generation.

    Example:
        >>> model = GPT(GPTConfig(vocab_size=65, block_size=32, dim=32, depth=2, num_heads=4, mlp_dim=128))
        >>> model(torch.zeros(2, 10, dtype=torch.long)).shape
        torch.Size([2, 10, 65])
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.position: nn.Module | None = None  # added to the tokens; or the rotary angles of every layer
        self.rotary: RotaryEmbedding | None = None
        if config.position == "learned":
            self.position = LearnedPositionEmbedding(config.block_size, config.dim)
        elif config.position == "sincos":
            self.position = SinusoidalPositionEncoding(config.block_size, config.dim)
        else:
            self.rotary = RotaryEmbedding(config.dim // config.num_heads)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = Encoder(
            config.dim, config.num_heads, config.mlp_dim, config.depth, dropout=config.dropout,
            activation=config.activation, norm_first=True, final_norm=True, qk_norm=config.qk_norm,
        )  # fmt: skip
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.apply(_init_weights)
        if config.zero_init:  # each residual branch starts as the identity
            for layer in self.encoder.layers:
                nn.init.zeros_(layer.self_attn.out_proj.weight)
                nn.init.zeros_(layer.linear2.weight)
        if config.tie_weights:
            self.head.weight = self.token_embedding.weight

    def forward(
        self,
        idx: Tensor,
        caches: list[KVCache] | None = None,
        *,
        key_mask: Tensor | None = None,
        positions: Tensor | None = None,
        window: int | None = None,
    ) -> Tensor:
        """Token ids (B, T) -> next-token logits (B, T, vocab).

        ``caches``: one :class:`KVCache` per layer; the T tokens then follow the cached ones.
        ``key_mask`` (B, cached + T), True = real token: left padding, never attended. ``positions``
        (B, T): each token's position (default: its index after the cached ones), e.g. counted from
        each row's first real token. ``window``: each token attends only the latest ``window`` tokens
        (itself included) in every layer, sliding-window attention (what rotary generation computes
        once its window slides; without a cache).
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, tokens); got {tuple(idx.shape)}")
        offset = caches[0].seen if caches else 0  # a sliding cache (rope) holds at most block_size of them
        if window is not None and not (self.rotary is not None and 0 < window <= self.config.block_size):
            raise ValueError(f"window needs rope positions and 1..{self.config.block_size} tokens; got {window}")
        if window is None and not (caches and caches[0].sliding) and offset + idx.shape[1] > self.config.block_size:
            raise ValueError(f"{offset + idx.shape[1]} tokens exceed block_size {self.config.block_size}")
        x, rope = self._embed(idx, offset if positions is None else positions)
        band = None
        if window is not None:
            if caches:
                raise ValueError("window is for a forward without caches (a sliding cache is the cached form)")
            distance = torch.arange(idx.shape[1], device=idx.device)
            distance = distance[:, None] - distance[None, :]  # (T, T): query i minus key j
            band = (distance >= 0) & (distance < window)
        x = self.encoder(self.dropout(x), mask=band, causal=True, key_mask=key_mask, caches=caches, rope=rope)
        return self.head(x)

    def _span(self) -> int:
        """How many latest tokens sliding-window attention reads through all layers (its receptive field)."""
        return len(self.encoder.layers) * (self.config.block_size - 1) + 1

    def _embed(self, idx: Tensor, offset: int | Tensor) -> tuple[Tensor, Tensor | None]:
        """Token ids (B, T) at positions ``offset`` … (or (B, T) positions) -> embeddings (B, T, D), with
        the positions added, or with the rotary angles of those positions for every layer."""
        x = self.token_embedding(idx)
        if self.rotary is not None:
            return x, self.rotary(idx.shape[1], offset)
        assert self.position is not None
        return self.position(x, offset), None

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of predicting ``targets`` (B, T) from ``idx`` (B, T)."""
        logits = self(idx)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    @torch.no_grad()
    def sequence_loss(self, ids: Tensor, batch_size: int = 16) -> tuple[float, int]:
        """Summed cross-entropy of predicting each of ``ids[1:]`` (N,) from the characters before it, and how
        many were predicted: (sum, N - 1).

        Windows of ``block_size`` overlap by half, and each character is scored once: after the first
        window every character is predicted from at least ``block_size // 2`` characters before it.
        """
        if ids.dim() != 1 or ids.numel() < 2:
            raise ValueError(f"sequence_loss needs a 1-D sequence of at least 2 tokens; got shape {tuple(ids.shape)}")
        was_training = self.training
        self.eval()
        block, stride, n = self.config.block_size, max(1, self.config.block_size // 2), ids.numel()
        ends = [min(block, n - 1)]  # the last target of each window
        while ends[-1] < n - 1:
            ends.append(min(ends[-1] + stride, n - 1))
        done = [0, *ends[:-1]]  # targets up to here were scored by the window before
        total = 0.0
        for i in range(0, len(ends), batch_size):
            chunk, before = ends[i : i + batch_size], done[i : i + batch_size]
            length = min(block, ends[0])
            x = torch.stack([ids[e - length : e] for e in chunk]).to(self.head.weight.device)  # (B, T)
            y = torch.stack([ids[e - length + 1 : e + 1] for e in chunk]).to(x.device)
            losses = F.cross_entropy(self(x).flatten(0, 1).float(), y.flatten(), reduction="none").view(len(chunk), -1)
            fresh = torch.stack([torch.arange(e - length + 1, e + 1) > d for e, d in zip(chunk, before)])
            total += float(losses[fresh.to(x.device)].sum())
        self.train(was_training)
        return total, n - 1

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Samples ``max_new_tokens`` tokens after ``idx`` (B, T); returns (B, T + max_new_tokens).

        The model sees a window of the latest tokens. With absolute positions (learned, sincos), keys
        cached at one position are wrong at another, so the window does not slide one token at a time:
        once it holds ``block_size`` tokens it jumps forward to keep the latest ``block_size // 2`` and
        the cache is rebuilt from them. With rotary positions scores depend only on distances, so the
        window slides by one token and the cache with it (the oldest key overwritten, nothing rebuilt):
        every layer then attends its latest ``block_size`` positions, whose cached keys of deeper layers
        carry what earlier layers saw before (sliding-window attention, as in Mistral; the receptive field
        grows by ``block_size - 1`` per layer). ``use_cache=False`` recomputes every step what the cache
        computes — the jumping windows, or sliding-window attention over the last ``depth ·
        (block_size - 1) + 1`` tokens — so both give the same tokens for the same ``generator``. Both
        start from the prompt's last ``block_size`` tokens.
        """
        new = list(self.stream(idx, max_new_tokens, temperature, top_k, use_cache=use_cache, generator=generator))
        return torch.cat([idx, *new], dim=1)

    @torch.no_grad()
    def stream(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensor]:
        """Yields the new tokens (B, 1) one at a time, as :meth:`generate` samples them (same arguments)."""
        _check_sampling(temperature, top_k)
        if idx.numel() == 0:
            raise ValueError("generation needs a prompt of at least one token")
        was_training = self.training
        self.eval()
        block, keep = self.config.block_size, max(1, self.config.block_size // 2)
        start = max(0, idx.shape[1] - block)  # the window is idx[:, start:]; with rope: where windows begin
        caches: list[KVCache] | None = None
        fast = self.encoder.can_run_fast()  # not when attention is being recorded
        try:
            for _ in range(max_new_tokens):
                if idx.shape[1] - start > block and not self.rotary:
                    start = idx.shape[1] - keep
                    caches = None
                with torch.inference_mode():  # less bookkeeping per operation; only `token` leaves it
                    if not use_cache and self.rotary:  # what the sliding cache computes, from scratch
                        logits = self(idx[:, max(start, idx.shape[1] - self._span()) :], window=block)[:, -1]
                    elif not use_cache:
                        logits = self(idx[:, start:])[:, -1]
                    elif caches is None:  # (re)fill the cache with the window
                        caches = [KVCache(block, sliding=self.rotary is not None) for _ in self.encoder.layers]
                        logits = self(idx[:, start:], caches)[:, -1]
                    elif not fast:
                        logits = self(idx[:, -1:], caches)[:, -1]
                    else:  # the fast path: one token through every layer
                        x, rope = self._embed(idx[:, -1:], caches[0].seen)
                        logits = self.head(self.encoder.fast(x, caches, rope))[:, -1]
                    token = _sample(logits.float(), temperature, top_k, generator)
                token = token.clone()  # an ordinary tensor again, usable anywhere
                idx = torch.cat([idx, token], dim=1)
                yield token
        finally:
            self.train(was_training)

    @torch.no_grad()
    def generate_batch(
        self,
        prompts: Sequence[Tensor],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Samples ``max_new_tokens`` after each of several prompts of different lengths at once; returns
        each prompt (1-D ids) followed by its new tokens.

        The prompts are left-padded to one width, a key mask keeps the padding from being attended and
        positions count from each row's first real token, so each row computes what :meth:`generate`
        computes for it alone (the same window jumps or slides, row by row; the same tokens with
        ``top_k=1``). With rotary positions the cache is a ring: a column of keys and its mask are
        overwritten together.
        """
        if not prompts or any(p.dim() != 1 or p.numel() == 0 for p in prompts):
            shapes = [tuple(p.shape) for p in prompts]
            raise ValueError(f"prompts must be non-empty 1-D id tensors; got shapes {shapes}")
        _check_sampling(temperature, top_k)
        was_training = self.training
        self.eval()
        block, keep = self.config.block_size, max(1, self.config.block_size // 2)
        sliding = self.rotary is not None
        rows = [p.to(self.head.weight.device) for p in prompts]
        starts = [max(0, len(row) - block) for row in rows]  # row i's window is rows[i][starts[i]:]; rope: begins
        caches: list[KVCache] | None = None
        tokens = mask = positions = torch.empty(0)  # the last step's, once the cache is filled
        try:
            for _ in range(max_new_tokens):
                for i, row in enumerate(rows):
                    if len(row) - starts[i] > block and not sliding:  # as generate: the window jumps
                        starts[i], caches = len(row) - keep, None
                with torch.inference_mode():
                    if not use_cache and sliding:  # what the sliding cache computes, from scratch
                        span = self._span()
                        ids, mask, positions = _left_padded([r[max(s, len(r) - span) :] for r, s in zip(rows, starts)])
                        logits = self(ids, key_mask=mask, positions=positions, window=block)[:, -1]
                    elif caches is None or not use_cache:
                        ids, mask, positions = _left_padded([row[s:] for row, s in zip(rows, starts)])
                        caches = [KVCache(block, sliding=sliding) for _ in self.encoder.layers] if use_cache else None
                        logits = self(ids, caches, key_mask=mask, positions=positions)[:, -1]
                    else:  # one new token per row, after the cached window
                        if mask.shape[1] < block:
                            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
                        else:  # a full sliding cache: the new keys overwrite the oldest column, padding or not
                            mask = mask.clone()
                            mask[:, caches[0].seen % block] = True
                        positions = positions[:, -1:] + 1
                        logits = self(tokens, caches, key_mask=mask, positions=positions)[:, -1]
                    tokens = _sample(logits.float(), temperature, top_k, generator)  # (B, 1)
                tokens = tokens.clone()
                rows = [torch.cat([row, token]) for row, token in zip(rows, tokens)]
        finally:
            self.train(was_training)
        return rows


def _check_sampling(temperature: float, top_k: int | None) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be positive; got {top_k}")


def _left_padded(rows: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """1-D id sequences -> left-padded ids (B, W), key mask (B, W) and positions (B, W) counted from each
    row's first real token (0 on the padding)."""
    width = max(len(row) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=rows[0].device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=rows[0].device)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = row, True
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, positions


def _sample(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """(B, V) logits -> (B, 1) sampled ids."""
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # What torch.multinomial(probs, 1, generator=generator) computes, without its checks of the
    # probabilities (a third of a cached decoding step's sampling time): the same draws, the same ids.
    probs = logits.softmax(-1)
    return (probs / torch.empty_like(probs).exponential_(generator=generator)).argmax(-1, keepdim=True)


def _init_weights(module: nn.Module) -> None:
    """The lab's initialisation: weights N(0, 0.02), biases 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, MultiHeadAttention) and module.same_dims:
        nn.init.normal_(module.in_proj_weight, std=0.02)
