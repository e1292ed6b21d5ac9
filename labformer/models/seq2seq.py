"""The encoder–decoder of the lab's "self- vs cross-attention": characters in, characters out.

Source ids (B, S) → embedding + position → :class:`~labformer.transformer.Transformer` encoder → memory;
target ids (B, T) → embedding + position → decoder (causal self-attention, cross-attention over the
memory) → linear head (B, T, target vocabulary). Ids 0–3 are padding, start, end and unknown
(:mod:`labformer.data.pairs`).

Decoding (:meth:`Seq2Seq.translate`) is greedy or beam search, batched over sources of different lengths.
Each decoder layer's self-attention keys and values are cached step by step, and its cross-attention keys
and values of the memory are computed once per input; ``use_cache=False`` reruns the whole decoder on the
prefix at every step instead (the reference the tests compare with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer.attention import KVCache, MultiHeadAttention, record_attention
from labformer.config import JsonConfig, require_positive_ints, setting
from labformer.data.pairs import BOS, EOS, PAD, UNK
from labformer.position import LearnedPositionEmbedding
from labformer.transformer import Transformer

__all__ = ["Attention", "Decoded", "Seq2Seq", "Seq2SeqConfig"]


@dataclass
class Seq2SeqConfig(JsonConfig):
    """Hyper-parameters of a :class:`Seq2Seq`; stored as JSON next to its weights."""

    source_vocab: int = setting(64, "source ids: 4 special tokens and the source characters")
    target_vocab: int = setting(16, "target ids: 4 special tokens and the target characters")
    max_source: int = setting(40, "longest source (characters)")
    max_target: int = setting(16, "longest target (characters), its end token included")
    dim: int = setting(128, "token dimension D")
    num_heads: int = setting(4, "attention heads; must divide dim")
    encoder_layers: int = setting(2, "encoder layers (self-attention and a feed-forward block)")
    decoder_layers: int = setting(2, "decoder layers (causal self-attention, cross-attention, feed-forward)")
    mlp_dim: int = setting(256, "hidden size of each feed-forward block")
    dropout: float = setting(0.0, "on embeddings, inside the feed-forward blocks and on residual branches")
    attention_dropout: float = setting(
        0.0, "on the attention weights (above 0, attention cannot run torch's fused kernel: slower)"
    )
    norm_first: bool = setting(True, "pre-norm layers (the lab's); false = post-norm (Vaswani et al.)")
    activation: Literal["relu", "gelu"] = setting("relu", "of the feed-forward blocks")
    tie_weights: bool = setting(True, "the head shares the target embedding matrix")

    def __post_init__(self) -> None:
        names = ("source_vocab", "target_vocab", "max_source", "max_target", "dim", "num_heads", "encoder_layers",
                 "decoder_layers", "mlp_dim")  # fmt: skip
        require_positive_ints(**{name: getattr(self, name) for name in names})
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide dim ({self.dim})")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu'; got {self.activation!r}")


@dataclass
class Decoded:
    """What :meth:`Seq2Seq.translate` found for each source: the ids written (without start and end
    tokens) and the score that chose them (the mean log-probability per written token, end included)."""

    tokens: list[list[int]]
    scores: list[float]


@dataclass
class Attention:
    """The three kinds of attention of one source → target example, each per layer (layers, heads, ·, ·):
    the encoder's self-attention (S × S), the decoder's causal self-attention (T × T) and its
    cross-attention (T × S: each written token over the source); and the probability of each written token."""

    encoder: Tensor
    decoder: Tensor
    cross: Tensor
    probabilities: Tensor = field(default_factory=lambda: torch.empty(0))


class Seq2Seq(nn.Module):
    """Character encoder–decoder with cached greedy and beam-search decoding.

    Example:
        >>> model = Seq2Seq(Seq2SeqConfig(source_vocab=10, target_vocab=8, dim=32, num_heads=4, mlp_dim=64))
        >>> model(torch.randint(4, 10, (2, 7)), torch.randint(4, 8, (2, 5))).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.source_embedding = nn.Embedding(config.source_vocab, config.dim)
        self.target_embedding = nn.Embedding(config.target_vocab, config.dim)
        self.source_position = LearnedPositionEmbedding(config.max_source, config.dim)
        self.target_position = LearnedPositionEmbedding(config.max_target, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = Transformer(
            config.dim, config.num_heads, config.encoder_layers, config.decoder_layers, config.mlp_dim,
            dropout=config.dropout, activation=config.activation, norm_first=config.norm_first,
        )  # fmt: skip
        for attention in self.modules():
            if isinstance(attention, MultiHeadAttention):
                attention.dropout = config.attention_dropout
        self.head = nn.Linear(config.dim, config.target_vocab, bias=False)
        self.apply(_init_weights)
        if config.tie_weights:
            self.head.weight = self.target_embedding.weight

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Source ids (B, S), padded -> memory (B, S, D) and its key mask (B, S), True = real token."""
        if source.dim() != 2:
            raise ValueError(f"source must have shape (batch, characters); got {tuple(source.shape)}")
        if source.shape[1] > self.config.max_source:
            raise ValueError(f"a source of {source.shape[1]} characters exceeds max_source {self.config.max_source}")
        key_mask = source != PAD
        x = self.dropout(self.source_position(self.source_embedding(source)))
        return self.transformer.encode(x, key_mask), key_mask

    def _embed_target(self, target: Tensor, offset: int = 0) -> Tensor:
        if offset + target.shape[1] > self.config.max_target:
            raise ValueError(f"{offset + target.shape[1]} target positions exceed max_target {self.config.max_target}")
        return self.dropout(self.target_position(self.target_embedding(target), offset))

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        """Source ids (B, S) and target ids (B, T) starting with the start token -> logits (B, T, vocab)
        of each next target token (teacher forcing)."""
        memory, key_mask = self.encode(source)
        return self.head(self.transformer.decode(self._embed_target(target), memory, key_mask))

    @torch.no_grad()
    def translate(
        self, source: Tensor, *, beam: int = 1, max_length: int | None = None, use_cache: bool = True
    ) -> Decoded:
        """Writes the target of every source (B, S) (padded): greedy with ``beam`` 1, else beam search
        keeping ``beam`` hypotheses and choosing by the mean log-probability per token (length-normalised).
        At most ``max_length`` tokens each (default: max_target), the end token included."""
        if beam < 1:
            raise ValueError(f"beam must be a positive number of hypotheses; got {beam}")
        limit = min(max_length or self.config.max_target, self.config.max_target)
        was_training = self.training
        self.eval()
        try:
            return (self._greedy if beam == 1 else self._beam)(source, beam, limit, use_cache)
        finally:
            self.train(was_training)

    def _stepper(self, source: Tensor, copies: int, use_cache: bool):
        """A function (written (B', t) ids, the newest last) -> log-probabilities (B', vocab) of the next
        token, for the sources repeated ``copies`` times each; and its re-ordering of rows (beam search)."""
        memory, key_mask = self.encode(source)
        memory, key_mask = memory.repeat_interleave(copies, 0), key_mask.repeat_interleave(copies, 0)
        layers = self.transformer.decoder.layers
        state: dict[str, object] = {}
        if use_cache:
            state["kv"] = [layer.multihead_attn.memory_keys_values(memory) for layer in layers]
            state["caches"] = [KVCache(self.config.max_target) for _ in layers]

        def step(written: Tensor) -> Tensor:
            if use_cache:
                position = written.shape[1] - 1
                x = self._embed_target(written[:, -1:], position)
                for layer, cache, kv in zip(layers, state["caches"], state["kv"]):  # type: ignore[call-overload]
                    x = layer.step(x, kv, cache, key_mask)
                hidden = self.transformer.decoder._final_norm(x)[:, -1]
            else:
                hidden = self.transformer.decode(self._embed_target(written), memory, key_mask)[:, -1]
            logits = self.head(hidden).float()
            logits[:, [PAD, BOS, UNK]] = float("-inf")  # never written
            return F.log_softmax(logits, dim=-1)

        def reorder(index: Tensor) -> None:
            nonlocal memory, key_mask
            memory, key_mask = memory.index_select(0, index), key_mask.index_select(0, index)
            if use_cache:
                for cache in state["caches"]:  # type: ignore[attr-defined]
                    cache.reorder(index)
                state["kv"] = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state["kv"]]

        return step, reorder

    def _greedy(self, source: Tensor, beam: int, limit: int, use_cache: bool) -> Decoded:
        step, _ = self._stepper(source, 1, use_cache)
        B = source.shape[0]
        written = torch.full((B, 1), BOS, dtype=torch.long, device=source.device)
        done = torch.zeros(B, dtype=torch.bool, device=source.device)
        total = torch.zeros(B, device=source.device)
        lengths = torch.zeros(B, device=source.device)
        for _ in range(limit):
            logp = step(written)
            best, token = logp.max(-1)
            token = token.masked_fill(done, PAD)
            total += best.masked_fill(done, 0.0)
            lengths += (~done).float()
            written = torch.cat([written, token[:, None]], dim=1)
            done |= token == EOS
            if done.all():
                break
        tokens = [[t for t in row[1:] if t not in (EOS, PAD)] for row in written.tolist()]
        return Decoded(tokens, (total / lengths.clamp(min=1)).tolist())

    def _beam(self, source: Tensor, K: int, limit: int, use_cache: bool) -> Decoded:
        B, device = source.shape[0], source.device
        step, reorder = self._stepper(source, K, use_cache)
        written = torch.full((B * K, 1), BOS, dtype=torch.long, device=device)
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one live hypothesis per source at the start
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        done = [False] * B
        for t in range(limit):
            logp = step(written)  # (B·K, V)
            V = logp.shape[-1]
            candidates = (scores[:, :, None] + logp.view(B, K, V)).view(B, K * V)
            top, where = candidates.topk(min(2 * K, K * V), dim=1)
            top_list, where_list = top.tolist(), where.tolist()
            keep = torch.zeros(B, K, dtype=torch.long)
            tokens = torch.full((B, K), PAD, dtype=torch.long)
            new_scores = torch.full((B, K), float("-inf"))
            for b in range(B):
                if done[b]:
                    continue
                n = 0
                for score, index in zip(top_list[b], where_list[b]):
                    if score == float("-inf") or n == K:
                        break
                    parent, token = divmod(index, V)
                    if token == EOS:
                        prefix = written[b * K + parent, 1:].tolist()
                        finished[b].append((score / (t + 1), prefix))
                    else:
                        keep[b, n], tokens[b, n], new_scores[b, n] = parent, token, score
                        n += 1
                done[b] = len(finished[b]) >= K or n == 0
            if all(done):
                break
            index = (torch.arange(B)[:, None] * K + keep).view(-1).to(device)
            reorder(index)
            written = torch.cat([written.index_select(0, index), tokens.view(-1, 1).to(device)], dim=1)
            scores = new_scores.to(device)
        else:  # out of length: the live hypotheses count as they are
            for b in range(B):
                if not done[b]:
                    for k in range(K):
                        if scores[b, k] > float("-inf"):
                            finished[b].append((scores[b, k].item() / limit, written[b * K + k, 1:].tolist()))
        best = [max(hypotheses, key=lambda h: h[0]) for hypotheses in finished]
        return Decoded([tokens for _, tokens in best], [score for score, _ in best])

    @torch.no_grad()
    def attention(self, source: Tensor, written: Tensor) -> Attention:
        """The three kinds of attention of one example: ``source`` (S,) ids and ``written`` (T,) the target
        ids written (without start or end token). The decoder reads start + written and predicts written
        + end: T + 1 positions (at most max_target: a target cut at the limit has no end)."""
        was_training = self.training
        self.eval()
        positions = min(len(written) + 1, self.config.max_target)
        try:
            target = torch.cat([torch.tensor([BOS], device=written.device), written])[None, :positions]
            with record_attention(self) as maps:
                logits = self(source[None], target)
        finally:
            self.train(was_training)
        enc = len(self.transformer.encoder.layers)
        decoder_self, cross = maps[enc::2], maps[enc + 1 :: 2]  # each decoder layer: self, then cross
        following = torch.cat([written, torch.tensor([EOS], device=written.device)])[:positions]
        probabilities = logits[0].float().softmax(-1).gather(-1, following[:, None])[:, 0]
        stack = lambda found: torch.stack([m[0] for m in found])  # noqa: E731  (layers, heads, ·, ·)
        return Attention(stack(maps[:enc]), stack(decoder_self), stack(cross), probabilities)


def _init_weights(module: nn.Module) -> None:
    """Weights N(0, 0.02), biases 0, as the GPT's (the position tables start N(0, 0.02) too)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, MultiHeadAttention) and module.same_dims:
        nn.init.normal_(module.in_proj_weight, std=0.02)
