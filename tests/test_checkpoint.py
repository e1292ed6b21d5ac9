"""Optimiser and RNG state through checkpoint.safetensors: a restored optimiser takes the very same steps."""

from __future__ import annotations

import json

import pytest
import torch

from labformer import io
from labformer.training.checkpoint import load_training_state, read_resumable_run, save_training_state
from labformer.training.optim import build_optimizer
from labformer.training.recipes import ClassifyConfig


def model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return model, build_optimizer(model, 1e-2, 0.1)


def steps(model, optimizer, n: int) -> None:
    for _ in range(n):
        x = torch.randn(16, 4)  # from the global generator, saved with the checkpoint
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_a_restored_optimizer_continues_exactly(tmp_path):
    model, optimizer = model_and_optimizer()
    steps(model, optimizer, 5)
    save_training_state(tmp_path / "c.safetensors", model, optimizer, {"note": "five"})
    steps(model, optimizer, 5)
    expected = [p.detach().clone() for p in model.parameters()]

    other, other_optimizer = model_and_optimizer(seed=1)  # different weights, fresh optimiser
    meta, _ = load_training_state(tmp_path / "c.safetensors", other, other_optimizer)
    assert meta["note"] == "five"
    assert other_optimizer.state_dict()["state"][0]["step"] == 5
    steps(other, other_optimizer, 5)
    for a, b in zip(expected, other.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    model, optimizer = model_and_optimizer()
    steps(model, optimizer, 1)
    save_training_state(tmp_path / "c.safetensors", model, optimizer, {})
    small = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="does not fit this run"):
        load_training_state(tmp_path / "c.safetensors", small, build_optimizer(small, 1e-2, 0.1))


def test_resuming_keeps_the_saved_settings_but_takes_the_run_time_switches(tmp_path):
    saved = ClassifyConfig(epochs=3, lr=2e-3, amp="none", device="cpu")
    io.write_json(tmp_path / "config.json", {"kind": "vit", "model": {}, "train": saved.to_dict()})
    asked = ClassifyConfig(epochs=99, lr=1.0, device="cuda", compile=True, checkpoint_every=7)
    _, settings = read_resumable_run(tmp_path, "vit", asked)
    assert (settings["epochs"], settings["lr"], settings["amp"]) == (3, 2e-3, "none")
    assert (settings["device"], settings["compile"], settings["checkpoint_every"]) == ("cuda", True, 7)
    with pytest.raises(ValueError, match="holds a vit run"):
        read_resumable_run(tmp_path, "gpt", asked)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 3  # nothing rewritten
