"""labformer.runs: the kind registry and a run directory's config, with clear errors."""

from __future__ import annotations

import pytest
import torch

from labformer import io, runs
from labformer.models.gpt import GPT
from labformer.models.vit import ViT


def test_every_kind_builds_its_model_from_a_saved_config():
    vit = runs.build_model("vit", {"dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32})
    gpt = runs.build_model("gpt", {"vocab_size": 11, "block_size": 8, "dim": 16, "depth": 1, "num_heads": 2})
    assert isinstance(vit, ViT) and isinstance(gpt, GPT)
    assert vit(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert set(runs.KINDS) == {"vit", "gpt"}


def test_bad_kinds_and_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model kind 'cnn' in config.json; expected one of \['gpt', 'vit'\]"):
        runs.build_model("cnn", {})
    with pytest.raises(ValueError, match=r"unknown ViTConfig keys \['colour'\]"):
        runs.build_model("vit", {"colour": 3})
    with pytest.raises(FileNotFoundError, match="run directory .*nowhere does not exist"):
        runs.read_run_config(tmp_path / "nowhere")
    io.write_json(tmp_path / runs.CONFIG, {"kind": "vit"})
    with pytest.raises(ValueError, match=r"is not a labformer run config \(no 'kind' and 'model'\)"):
        runs.read_run_config(tmp_path)
