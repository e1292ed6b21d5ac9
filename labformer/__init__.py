"""labformer: the Transformers lab (Université Laval, GLO-4030/7030, Laboratoire 8) as a library.

Parts 1–2: :mod:`labformer.attention`; position encodings: :mod:`labformer.position`;
Parts 3–4 and the decoder: :mod:`labformer.encoder`, :mod:`labformer.decoder`; the encoder–decoder:
:mod:`labformer.transformer`.
"""

from labformer.attention import (
    AttentionHead,
    ConcatHeadsAttention,
    KVCache,
    MultiHeadAttention,
    attention_weights,
    record_attention,
    scaled_dot_product_attention,
)
from labformer.decoder import Decoder, DecoderLayer
from labformer.encoder import Encoder, EncoderLayer, FeedForward
from labformer.position import LearnedPositionEmbedding, SinusoidalPositionEncoding, sinusoidal_encoding
from labformer.transformer import Transformer

__version__ = "0.1.0"

__all__ = [
    "AttentionHead",
    "ConcatHeadsAttention",
    "Decoder",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "FeedForward",
    "KVCache",
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionEncoding",
    "Transformer",
    "attention_weights",
    "record_attention",
    "scaled_dot_product_attention",
    "sinusoidal_encoding",
    "load",
]


def __getattr__(name: str):
    """``labformer.load`` (runs.load) is imported on first use: ``import labformer`` for the core alone
    loads no training code, safetensors or matplotlib."""
    if name == "load":
        from labformer.runs import load

        return load
    raise AttributeError(f"module 'labformer' has no attribute {name!r}")
