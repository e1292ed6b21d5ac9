"""Part 3 of the lab as experiments: BatchNorm vs LayerNorm, and pre-norm vs post-norm gradients."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from labformer.encoder import Encoder
from labformer.lab.result import Result

PART = "Part 3 — Encoder layer"


def batchnorm_vs_layernorm() -> Result:
    """The lab's set-up (seed 42, batch 32, dim 100, an MLP): statistics per feature and per sample."""
    torch.manual_seed(42)
    mlp = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 100))
    x = mlp(torch.randn(32, 100)).detach()
    batch_norm, layer_norm = nn.BatchNorm1d(100), nn.LayerNorm(100)
    b, l = batch_norm(x).detach(), layer_norm(x).detach()  # train mode: batch statistics
    batch_norm.eval()
    b_eval = batch_norm(x).detach()  # eval mode: running averages after one update
    layer_norm.eval()
    l_eval = layer_norm(x).detach()
    numbers = {
        "BatchNorm: max |mean per feature|": float(b.mean(0).abs().max()),
        "BatchNorm: mean variance per feature": float(b.var(0, unbiased=False).mean()),
        "BatchNorm: max |mean per sample|": float(b.mean(1).abs().max()),
        "LayerNorm: max |mean per sample|": float(l.mean(1).abs().max()),
        "LayerNorm: mean variance per sample": float(l.var(1, unbiased=False).mean()),
        "LayerNorm: max |mean per feature|": float(l.mean(0).abs().max()),
        "BatchNorm: max |train - eval| output": float((b - b_eval).abs().max()),
        "LayerNorm: max |train - eval| output": float((l - l_eval).abs().max()),
    }
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, (name, y) in zip(axes, (("BatchNorm", b), ("LayerNorm", l))):
        axis.plot(y.mean(0).numpy(), label="mean per feature", marker=".", linestyle="none")
        axis.plot(y.mean(1).numpy(), label="mean per sample", marker="x", linestyle="none")
        axis.plot(y.var(0, unbiased=False).numpy(), label="variance per feature", alpha=0.6)
        axis.plot(y.var(1, unbiased=False).numpy(), label="variance per sample", alpha=0.6)
        axis.set_title(name)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    return Result(
        "batchnorm_vs_layernorm",
        "BatchNorm vs LayerNorm",
        PART,
        "BatchNorm normalises each feature across the batch and changes in eval mode; LayerNorm "
        "normalises each sample and behaves the same in training and test.",
        numbers,
        figure,
    )


def _gradient_norms(depth: int, norm_first: bool, residual: bool, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    encoder = Encoder(64, 4, 128, depth, norm_first=norm_first, final_norm=norm_first)
    if not residual:
        for layer in encoder.layers:  # remove the skip connections: each sub-block replaces x
            layer.forward = _no_residual(layer)  # type: ignore[method-assign]
    x, readout = torch.randn(8, 16, 64), torch.randn(8, 16, 64)
    # A random linear read-out: mean(y²) after a LayerNorm is constant, so it would carry no gradient.
    (encoder(x) * readout).mean().backward()
    return [float(layer.linear1.weight.grad.norm()) for layer in encoder.layers]


def _no_residual(layer):
    """The layer's forward with its two branches chained instead of added to x."""

    def forward(x, **_):
        if layer.norm_first:
            return layer._ff_block(layer.norm2(layer._sa_block(layer.norm1(x))))
        return layer.norm2(layer._ff_block(layer.norm1(layer._sa_block(x))))

    return forward


def pre_vs_post_norm(depths: tuple[int, ...] = (2, 6, 12, 24, 48)) -> Result:
    """Gradient norm per layer at initialisation: pre-norm vs post-norm, with and without residuals."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    numbers = {}
    for axis, residual in zip(axes, (True, False)):
        for norm_first, style in ((True, "-"), (False, "--")):
            for i, depth in enumerate(depths):
                grads = _gradient_norms(depth, norm_first, residual)
                label = f"{'pre' if norm_first else 'post'}-norm, {depth} layers"
                axis.plot(range(1, depth + 1), grads, style, color=f"C{i}", label=label)
                if depth == depths[-1]:
                    key = f"{'pre' if norm_first else 'post'}-norm{'' if residual else ' no residual'}"
                    numbers[f"{key}, {depth} layers: first/last layer gradient"] = grads[0] / max(grads[-1], 1e-30)
        axis.set(yscale="log", xlabel="layer", title="with residuals" if residual else "without residuals")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("‖∂loss/∂W₁‖ of the layer's FFN")
    axes[1].legend(fontsize=6, ncol=2)
    return Result(
        "pre_vs_post_norm",
        "Pre-norm vs post-norm, and why residuals help depth",
        PART,
        "With residuals the gradient reaches the first layers; without them it vanishes with depth.",
        numbers,
        figure,
    )
