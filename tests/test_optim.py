"""The learning-rate schedule and the optimiser's parameter groups, against formulas written out here."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labformer.models.vit import ViT, ViTConfig
from labformer.training.muon import Muon
from labformer.training.optim import NO_DECAY_NAMES, Schedule, build_optimizer, learning_rate


@given(
    total=st.integers(1, 500),
    warmup=st.integers(0, 100),
    lr=st.floats(1e-5, 1.0),
    floor=st.floats(0.0, 1.0),
)
def test_warmup_then_cosine_to_the_floor(total, warmup, lr, floor):
    schedule = Schedule(lr, total, warmup, "cosine", floor)
    rates = [schedule.at(step) for step in range(total + warmup + 5)]
    for step, rate in enumerate(rates):
        if step < warmup:
            assert rate == pytest.approx(lr * (step + 1) / warmup)
        else:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            assert rate == pytest.approx(lr * (floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2))
        assert rate <= lr * (1 + 1e-12) and (step < warmup or rate >= floor * lr * (1 - 1e-12))
    after_warmup = rates[warmup:]
    assert all(a >= b - 1e-15 for a, b in zip(after_warmup, after_warmup[1:]))  # never rises after the warm-up
    assert rates[-1] == pytest.approx(floor * lr)


def test_constant_schedule_and_the_function_agree():
    schedule = Schedule(3e-3, 100, 10, "constant")
    assert [schedule.at(s) for s in range(10, 100)] == [3e-3] * 90
    assert schedule.at(4) == learning_rate(4, base_lr=3e-3, total_steps=100, warmup_steps=10, schedule="constant")


def test_weight_decay_only_on_weight_matrices():
    model = ViT(ViTConfig(image_size=28, patch_size=7, channels=1, dim=16, depth=1, num_heads=2, mlp_dim=32))
    optimizer = build_optimizer(model, 1e-3, 0.05)
    decay, no_decay = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    undecayed_matrices = [names[id(p)] for p in no_decay["params"] if p.dim() >= 2]
    assert undecayed_matrices and all(any(key in n for key in NO_DECAY_NAMES) for n in undecayed_matrices)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize(("lr", "decay", "message"), [(0.0, 0.1, "lr must be positive"), (1e-3, -1, "weight_decay")])
def test_bad_settings_are_refused(lr, decay, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(torch.nn.Linear(2, 2), lr, decay)


def test_muon_takes_the_encoder_matrices_and_its_chained_state_round_trips():
    """Muon gets the layers' weight matrices, AdamW the rest; the combined state survives a checkpoint's
    JSON, and after loading it the learning rate a trainer sets still reaches both optimisers (a resumed
    run once kept the checkpoint's rate because load_state_dict replaces the group dicts)."""
    import json

    from labformer.models.gpt import GPT, GPTConfig
    from labformer.training.checkpoint import flatten_optimizer, unflatten_optimizer

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, dim=16, depth=2, num_heads=2, mlp_dim=32))
    chained = build_optimizer(model, 1e-3, 0.1, kind="muon")
    muon, adamw = chained.optimizers
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    assert muon.precision == "float32"
    hidden = {id(p) for p in muon.param_groups[0]["params"]}
    assert hidden == {id(p) for n, p in model.named_parameters() if n.startswith("encoder.layers") and p.dim() == 2}
    x = torch.randint(0, 11, (2, 8))
    for _ in range(3):
        chained.zero_grad()
        model.loss(x, x).backward()
        chained.step()
    tensors, rest = flatten_optimizer(chained.state_dict())
    loaded = build_optimizer(model, 1e-3, 0.1, kind="muon")
    loaded.load_state_dict(unflatten_optimizer(tensors, json.loads(json.dumps(rest))))
    for a, b in zip(chained.optimizers, loaded.optimizers):
        for state_a, state_b in zip(a.state_dict()["state"].values(), b.state_dict()["state"].values()):
            for name in state_a:
                torch.testing.assert_close(state_b[name], state_a[name])
    for group in loaded.param_groups:
        group["lr"] = 0.5
    assert [g["lr"] for o in loaded.optimizers for g in o.param_groups] == [0.5] * 3
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'muon'; got 'sgd'"):
        build_optimizer(model, 1e-3, 0.1, kind="sgd")
