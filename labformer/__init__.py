"""labformer: the Transformers lab (Université Laval, GLO-4030/7030, Laboratoire 8) as a library.

Parts 1–2: :mod:`labformer.attention`; position encodings: :mod:`labformer.position`;
Parts 3–4 and the decoder: :mod:`labformer.encoder`.
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
from labformer.encoder import Decoder, DecoderLayer, Encoder, EncoderLayer, FeedForward
from labformer.position import LearnedPositionEmbedding, SinusoidalPositionEncoding, sinusoidal_encoding

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
    "attention_weights",
    "record_attention",
    "scaled_dot_product_attention",
    "sinusoidal_encoding",
]

from labformer.api import load  # noqa: E402

__all__ += ["load"]
