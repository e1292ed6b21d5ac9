"""Parts 1–2 of the lab: scaled dot-product attention and multi-head attention.

``functional`` (the function, masks, plain and fused paths), ``multi_head``, ``cache`` (KV cache),
``recording`` (attention maps from any model) and ``teaching`` (the lab's per-head form).

Masks follow one convention everywhere: a boolean mask is True where a query *may attend* to a key
(as in the lab and in :func:`torch.nn.functional.scaled_dot_product_attention`); a float mask is
added to the scores. A query row with nothing to attend to returns zeros, never NaN, in the output
and in the gradient.
"""

from labformer.attention.cache import KVCache
from labformer.attention.functional import attention_weights, merge_masks, scaled_dot_product_attention
from labformer.attention.multi_head import MultiHeadAttention
from labformer.attention.recording import attention_rollout, record_attention
from labformer.attention.teaching import AttentionHead, ConcatHeadsAttention

__all__ = [
    "attention_rollout",
    "AttentionHead",
    "ConcatHeadsAttention",
    "KVCache",
    "MultiHeadAttention",
    "attention_weights",
    "merge_masks",
    "record_attention",
    "scaled_dot_product_attention",
]
