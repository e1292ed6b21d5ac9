"""The learning-rate schedule and the optimiser's parameter groups, against formulas written out here."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labformer.models.vit import ViT, ViTConfig
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
