"""What the benchmarks count is right: the ViT benchmark's training FLOPs, which its "% of the matmul peak"
column divides by, against a count by hand from the model's shape."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from labformer.models.vit import ViT, ViTConfig

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def vit_benchmark():
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports its sibling `timing`
    try:
        spec = importlib.util.spec_from_file_location("vit_mnist_benchmark", BENCHMARKS / "vit_mnist.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def forward_flops_by_hand(config: ViTConfig, classes: int = 10) -> int:
    """Multiply-adds × 2 of one image's forward: patch projection, per layer the four projections and the
    two attention products, the head."""
    patches = (config.image_size // config.patch_size) ** 2
    tokens, dim = patches + 1, config.dim  # the class token
    patch = 2 * patches * config.patch_size**2 * config.channels * dim
    projections = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * config.mlp_dim)
    attention = 2 * 2 * tokens * tokens * dim  # q kᵀ and the weighted sum of v, all heads together
    return patch + config.depth * (projections + attention) + 2 * dim * classes


@pytest.mark.parametrize("backend", ["labformer", "torch"])
def test_training_flops_count_the_fused_attention(vit_benchmark, backend):
    config = ViTConfig(image_size=28, patch_size=7, dim=32, depth=2, num_heads=4, mlp_dim=64, backend=backend)
    torch.manual_seed(0)
    counted = vit_benchmark.training_flops_per_image(ViT(config), torch.randn(4, 1, 28, 28))
    assert counted == 3 * forward_flops_by_hand(config)
