"""labformer.runs: the kind registry and a run directory's config, with clear errors."""

from __future__ import annotations

import pytest
import torch

from labformer import io, runs
from labformer.models.gpt import GPT
from labformer.models.seq2seq import Seq2Seq
from labformer.models.vit import ViT


def test_every_kind_builds_its_model_from_a_saved_config():
    vit = runs.build_model("vit", {"dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32})
    gpt = runs.build_model("gpt", {"vocab_size": 11, "block_size": 8, "dim": 16, "depth": 1, "num_heads": 2})
    assert isinstance(vit, ViT) and isinstance(gpt, GPT)
    assert vit(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    seq2seq = runs.build_model("seq2seq", {"source_vocab": 9, "target_vocab": 7, "dim": 16, "num_heads": 2})
    logits = seq2seq(torch.randint(4, 9, (2, 5)), torch.randint(4, 7, (2, 3)))
    assert isinstance(seq2seq, Seq2Seq) and logits.shape == (2, 3, 7)
    assert set(runs.KINDS) == {"vit", "gpt", "seq2seq"}


def test_bad_kinds_and_configs_are_refused(tmp_path):
    kinds = r"\['gpt', 'seq2seq', 'vit'\]"
    with pytest.raises(ValueError, match=rf"unknown model kind 'cnn' in config.json; expected one of {kinds}"):
        runs.build_model("cnn", {})
    with pytest.raises(ValueError, match=r"unknown ViTConfig keys \['colour'\]"):
        runs.build_model("vit", {"colour": 3})
    with pytest.raises(FileNotFoundError, match="run directory .*nowhere does not exist"):
        runs.read_run_config(tmp_path / "nowhere")
    io.write_json(tmp_path / runs.CONFIG, {"kind": "vit"})
    with pytest.raises(ValueError, match=r"is not a labformer run config \(no 'kind' and 'model'\)"):
        runs.read_run_config(tmp_path)
