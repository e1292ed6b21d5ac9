"""Part 6 of the lab: the Vision Transformer (Dosovitskiy et al., 2021).

Image (B, C, H, W) → patches (B, N, C·p·p) → linear embedding (B, N, D) → [class token] + position
→ pre-norm encoder → final LayerNorm → pool (class token or mean) → linear head (B, num_classes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from labformer.attention import record_attention
from labformer.config import JsonConfig, require_positive_ints, setting
from labformer.encoder import Encoder
from labformer.position import LearnedPositionEmbedding, SinusoidalPositionEncoding

__all__ = ["ViT", "ViTConfig", "vit_attention_maps"]


@dataclass
class ViTConfig(JsonConfig):
    """Hyper-parameters of a :class:`ViT`; stored as JSON next to its weights."""

    image_size: int = setting(28, "height = width of the input images")
    channels: int = setting(1, "colour channels of the input")
    patch_size: int = setting(7, "side of a square patch; must divide image_size")
    num_classes: int = setting(10, "outputs of the head")
    dim: int = setting(64, "token dimension D")
    depth: int = setting(6, "encoder layers")
    num_heads: int = setting(8, "attention heads; must divide dim unless head_dim is given")
    head_dim: int | None = setting(
        None, "size of each head's queries, keys and values (default: dim / num_heads); the lab's ViT has "
        "12 heads of 42 on d = 512, concatenated to 504 and projected back to 512",
    )  # fmt: skip
    mlp_dim: int = setting(128, "hidden size of each feed-forward block")
    activation: Literal["gelu", "relu"] = setting("gelu", "the feed-forward block's activation (the lab's: relu)")
    pool: Literal["cls", "mean"] = setting("cls", "classify from the class token or the mean of the patch tokens")
    dropout: float = setting(0.0, "on embeddings, attention weights and residual branches")
    position: Literal["learned", "sincos"] = setting("learned", "position encoding of the tokens")
    backend: Literal["labformer", "torch"] = setting("labformer", "whose encoder layers run (same weights)")
    stem: Literal["linear", "norm", "conv", "convnet"] = setting(
        "linear", "patch embedding: linear (the lab's); norm = LayerNorm before and after it; conv = a 3x3 "
        "convolution and 2x2 max pooling per halving down to the patch grid; convnet = a deeper one, two "
        "convolutions per halving after the first, with BatchNorm, channels doubling (patch_size a power of 2 "
        "for both; beyond the lab)",
    )  # fmt: skip
    stem_width: int | None = setting(
        None, "channels of the conv stem's stages before the last (default: dim / 4); convnet: of its first "
        "stage, doubled at each halving",
    )  # fmt: skip
    stem_norm: bool = setting(False, "conv stem: BatchNorm after each convolution")

    def __post_init__(self) -> None:
        names = ("image_size", "channels", "patch_size", "num_classes", "dim", "depth", "num_heads", "mlp_dim")
        require_positive_ints(**{name: getattr(self, name) for name in names})
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size ({self.patch_size}) must divide image_size ({self.image_size})")
        if self.head_dim is None and self.dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide dim ({self.dim}), or give head_dim")
        if self.head_dim is not None:
            require_positive_ints(head_dim=self.head_dim)
            if self.backend == "torch" and self.head_dim * self.num_heads != self.dim:
                raise ValueError(
                    f"backend 'torch' needs num_heads x head_dim = dim; got {self.num_heads} x {self.head_dim} "
                    f"for dim {self.dim}"
                )
        choices = {
            "pool": ("cls", "mean"),
            "position": ("learned", "sincos"),
            "backend": ("labformer", "torch"),
            "stem": ("linear", "norm", "conv", "convnet"),
            "activation": ("gelu", "relu"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        if self.stem_width is not None:
            require_positive_ints(stem_width=self.stem_width)
        if self.stem_width is not None and self.stem not in ("conv", "convnet"):
            raise ValueError(f"stem_width is for the 'conv' and 'convnet' stems only; got stem {self.stem!r}")
        if self.stem_norm and self.stem != "conv":
            raise ValueError(
                f"stem_norm is for the 'conv' stem only (convnet's always has BatchNorm); got stem {self.stem!r}"
            )
        if self.stem in ("conv", "convnet") and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(
                f"stem {self.stem!r} pools by 2 until the patch grid: patch_size must be 2, 4, 8...; "
                f"got {self.patch_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_encoder(config: ViTConfig) -> nn.Module:
    """The pre-norm encoder with a final LayerNorm; labformer's or PyTorch's (identical state dicts)."""
    if config.backend == "torch":
        layer = nn.TransformerEncoderLayer(
            config.dim, config.num_heads, config.mlp_dim, dropout=config.dropout, activation=config.activation,
            batch_first=True, norm_first=True,
        )  # fmt: skip
        return nn.TransformerEncoder(layer, config.depth, norm=nn.LayerNorm(config.dim), enable_nested_tensor=False)
    return Encoder(
        config.dim, config.num_heads, config.mlp_dim, config.depth, dropout=config.dropout,
        activation=config.activation, norm_first=True, final_norm=True, head_dim=config.head_dim,
    )  # fmt: skip


class ViT(nn.Module):
    """Vision Transformer classifier.

    Args:
        config: see :class:`ViTConfig`.

    Example:
        >>> model = ViT(ViTConfig(image_size=28, patch_size=7, dim=64, depth=2, num_heads=4, mlp_dim=128))
        >>> model(torch.randn(8, 1, 28, 28)).shape
        torch.Size([8, 10])
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        p = config.patch_size
        # A Linear on each flattened patch (= a Conv2d with stride p, but 4x faster to train on CPU).
        self.patch_embed = nn.Linear(config.channels * p * p, config.dim)
        norm = config.stem == "norm"  # as vit-pytorch: normalise each patch's pixels, then each embedding
        self.patch_norm_in = nn.LayerNorm(config.channels * p * p) if norm else nn.Identity()
        self.patch_norm_out = nn.LayerNorm(config.dim) if norm else nn.Identity()
        stems = {"conv": _conv_stem, "convnet": _convnet_stem}
        self.conv_stem = stems[config.stem](config) if config.stem in stems else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim)) if config.pool == "cls" else None
        num_tokens = config.num_patches + (config.pool == "cls")
        if config.position == "learned":
            self.position: nn.Module = LearnedPositionEmbedding(num_tokens, config.dim)
        else:
            self.position = SinusoidalPositionEncoding(num_tokens, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = build_encoder(config)
        self.head = nn.Linear(config.dim, config.num_classes)
        self.apply(_init_weights)

    def patches(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, C·p·p): non-overlapping p×p patches, row by row, each flattened (C, p, p)."""
        B, C, H, W = images.shape
        p = self.config.patch_size
        x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
        return x.reshape(B, (H // p) * (W // p), C * p * p)

    def tokens(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N [+1], D): patch embeddings, class token first, positions added."""
        if self.conv_stem is not None:  # (B, D, H/p, W/p) -> (B, N, D), the grid row by row
            # Channels last: the layout oneDNN's convolutions run fastest on.
            x = self.conv_stem(images.contiguous(memory_format=torch.channels_last)).flatten(2).transpose(1, 2)
        else:
            x = self.patch_norm_out(self.patch_embed(self.patch_norm_in(self.patches(images))))  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        return self.dropout(self.position(x))

    def forward_features(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N [+1], D), after the encoder's final LayerNorm."""
        expected = (self.config.channels, self.config.image_size, self.config.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must have shape (batch, {', '.join(map(str, expected))}); got {tuple(images.shape)}"
            )
        x = self.tokens(images)
        if isinstance(self.encoder, Encoder) and self.encoder.can_run_fast():  # evaluation without gradients
            return self.encoder.fast(x)
        return self.encoder(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """(B, N [+1], D) -> logits (B, num_classes)."""
        pooled = features[:, 0] if self.config.pool == "cls" else features.mean(1)
        return self.head(pooled)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(images))


def _conv_stem(config: ViTConfig) -> nn.Sequential:
    """A convolutional tokenizer (as in Hassani et al., 2021, "Compact Transformers"): per halving of the
    resolution, a 3x3 convolution, [BatchNorm,] ReLU and 2x2 max pooling; ``stem_width`` (default dim/4)
    channels, then dim at the last stage. (B, C, H, W) -> (B, dim, H/p, W/p)."""
    stages, channels, layers = config.patch_size.bit_length() - 1, config.channels, []
    width = config.stem_width or max(8, config.dim // 4)
    for stage in range(stages):
        out = config.dim if stage == stages - 1 else width
        norm = [nn.BatchNorm2d(out)] if config.stem_norm else []
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=not config.stem_norm), *norm, nn.ReLU(), nn.MaxPool2d(2)]
        channels = out
    return nn.Sequential(*layers)


def _convnet_stem(config: ViTConfig) -> nn.Sequential:
    """A small VGG-style network as the tokenizer (the hybrid of Dosovitskiy et al., 2021, sec. 3.1; its
    blocks as in Jordan's fast CIFAR-10 training, 2024): per halving of the resolution, 3x3 convolutions
    (one in the first stage, two after), each followed by BatchNorm and ReLU, with the 2x2 max pooling
    right after the stage's last convolution (before its BatchNorm: a quarter of the normalising). The
    channels are ``stem_width`` (default dim/4) in the first stage, doubled at each, and dim in the last.
    (B, C, H, W) -> (B, dim, H/p, W/p)."""
    stages, channels, layers = config.patch_size.bit_length() - 1, config.channels, []
    width = config.stem_width or max(8, config.dim // 4)
    for stage in range(stages):
        out = config.dim if stage == stages - 1 else width * 2**stage
        for index in range(1 if stage == 0 else 2):
            pool = [nn.MaxPool2d(2)] if index == (0 if stage == 0 else 1) else []
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), *pool, nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
    return nn.Sequential(*layers)


def _init_weights(module: nn.Module) -> None:
    """Linear layers N(0, 0.02) with zero biases, as in the lab (attention projections keep Xavier)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@torch.no_grad()
def vit_attention_maps(model: ViT, images: Tensor) -> list[Tensor]:
    """Per-layer (B, H, T, T) attention of a ViT on normalised images (either backend)."""
    if model.config.backend != "labformer":  # same weights, labformer layers expose their attention
        labformer_model = type(model)(dataclasses.replace(model.config, backend="labformer"))
        labformer_model.load_state_dict(model.state_dict())
        model = labformer_model.to(images.device)
    model.eval()
    with record_attention(model) as maps:
        model(images)
    return maps
