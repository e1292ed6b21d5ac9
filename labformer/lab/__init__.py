"""The lab's experiments: each a function returning its numbers, the lab's values and a figure.

>>> from labformer import lab
>>> result = lab.run("scaling")
>>> print("\\n".join(result.lines()))  # doctest: +SKIP
"""

from __future__ import annotations

from labformer.lab.attention_basics import (
    batched,
    message_passing,
    permutation,
    position_encodings,
    receptive_field,
    scaling,
    self_vs_cross,
    single_query,
    softmax_sharpening,
)
from labformer.lab.heads import heads_as_channels
from labformer.lab.norms import batchnorm_vs_layernorm, pre_vs_post_norm
from labformer.lab.result import Result

__all__ = ["EXPERIMENTS", "RUN_KINDS", "Result", "run", "run_arguments"]

# In the lab's order.
EXPERIMENTS = {
    fn.__name__: fn
    for fn in (
        single_query,
        batched,
        permutation,
        position_encodings,
        scaling,
        softmax_sharpening,
        message_passing,
        receptive_field,
        heads_as_channels,
        batchnorm_vs_layernorm,
        pre_vs_post_norm,
        self_vs_cross,
    )
}


def run(name: str, **kwargs: object) -> Result:
    """Runs the experiment ``name`` (see ``EXPERIMENTS``)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {list(EXPERIMENTS)}")
    return EXPERIMENTS[name](**kwargs)


# The experiments that read a trained run, and the kinds of run each reads.
RUN_KINDS = {"heads_as_channels": ("vit", "gpt"), "self_vs_cross": ("seq2seq",)}


def run_arguments(name: str, run_dirs: list[str] | None) -> dict[str, object]:
    """``{"run_dir": ...}`` for experiment ``name``: the last of ``run_dirs`` of a kind it reads (none: it
    uses its default)."""
    from labformer.runs import read_run_config

    chosen = [d for d in run_dirs or [] if read_run_config(d)["kind"] in RUN_KINDS.get(name, ())]
    return {"run_dir": chosen[-1]} if chosen else {}
