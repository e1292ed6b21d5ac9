"""AdamW with decoupled weight decay on weight matrices only (or Muon for the encoder's matrices and AdamW
for the rest), and a warm-up + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from labformer.training.muon import Muon

__all__ = ["ChainedOptimizer", "Schedule", "build_optimizer", "learning_rate"]

# Parameters that never decay: anything 1-D (biases, norms) and these embeddings.
NO_DECAY_NAMES = ("cls_token", "position", "pos_embed")


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    kind: Literal["adamw", "muon"] = "adamw",
    muon_precision: Literal["float32", "bf16"] = "float32",
) -> torch.optim.Optimizer | ChainedOptimizer:
    """AdamW with two groups: weight matrices decay, biases / norms / position and class tokens do not.

    ``kind="muon"`` (beyond the lab): the weight matrices of ``model.encoder`` go to labformer's
    :class:`~labformer.training.muon.Muon` (torch.optim.Muon's algorithm: momentum orthogonalised by
    Newton–Schulz iterations, Jordan et al. 2024), its update scaled to AdamW's size
    (``adjust_lr_fn="match_rms_adamw"``, Liu et al. 2025) so both follow one learning rate; embeddings,
    the head, biases and norms stay with AdamW. ``muon_precision`` is the orthogonalisation's dtype,
    resolved by :func:`labformer.training.runtime.resolve_muon_precision` (float32 on a CPU).
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    if kind not in ("adamw", "muon"):
        raise ValueError(f"optimizer must be 'adamw' or 'muon'; got {kind!r}")
    decay, no_decay, hidden = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.dim() < 2 or any(key in name for key in NO_DECAY_NAMES):
            no_decay.append(parameter)
        elif kind == "muon" and name.startswith("encoder.") and parameter.dim() == 2:
            hidden.append(parameter)
        else:
            decay.append(parameter)
    if kind == "muon" and not hidden:
        raise ValueError("optimizer 'muon' needs weight matrices under model.encoder; this model has none")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=lr, betas=betas, **_implementation(decay + no_decay))
    if kind == "adamw":
        return adamw
    muon = Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw", precision=muon_precision)
    return ChainedOptimizer(muon, adamw)


class ChainedOptimizer:
    """Several optimisers over disjoint parameters, used as one: ``param_groups`` lists every group (so a
    trainer setting each group's ``lr`` reaches all), ``step``/``zero_grad`` call each, and the state dict
    has torch's layout, parameters numbered across the optimisers in order (so checkpoints are unchanged)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Every optimiser's groups, read afresh (``load_state_dict`` replaces an optimiser's group dicts)."""
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for optimizer in self.optimizers:
            part = optimizer.state_dict()
            state.update({offset + index: values for index, values in part["state"].items()})
            groups += [{**group, "params": [offset + i for i in group["params"]]} for group in part["param_groups"]]
            offset += _count(optimizer.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups, offset = iter(state_dict["param_groups"]), 0
        for optimizer in self.optimizers:
            count = _count(optimizer.param_groups)
            mine = [next(groups) for _ in optimizer.param_groups]
            state = {int(i) - offset: v for i, v in state_dict["state"].items() if offset <= int(i) < offset + count}
            optimizer.load_state_dict({"state": state, "param_groups": [
                {**group, "params": [i - offset for i in group["params"]]} for group in mine
            ]})  # fmt: skip
            offset += count


def _count(groups: Iterable[dict[str, Any]]) -> int:
    return sum(len(group["params"]) for group in groups)


def _implementation(parameters: list[nn.Parameter]) -> dict[str, bool]:
    """fused=True where torch has a fused AdamW kernel for the parameters' device (CUDA; the CPU from
    torch 2.4): one pass per tensor. On a CPU, foreach falls back to a loop of small ops (146 copies
    per step for the fast ViT); fused is 4.6x faster there. Chosen by device and version, never by timing."""
    types = {parameter.device.type for parameter in parameters}
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    fused_ok = types <= {"cuda"} or (types <= {"cpu", "cuda"} and version >= (2, 4))
    floats = all(parameter.dtype in (torch.float32, torch.float16, torch.bfloat16) for parameter in parameters)
    return {"fused": True} if parameters and fused_ok and floats else {"foreach": True}


def learning_rate(
    step: int, *, base_lr: float, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float = 0.0
) -> float:
    """The learning rate at ``step`` (0-based): linear warm-up, then cosine decay to min_ratio·base_lr
    (``schedule`` "cosine") or constant (``schedule`` "constant")."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Schedule:
    """The learning rate of every step: :func:`learning_rate` with these settings."""

    lr: float  # peak
    total_steps: int
    warmup_steps: int
    kind: str = "cosine"  # or "constant"
    min_ratio: float = 0.0

    def at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        return learning_rate(
            step,
            base_lr=self.lr,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            schedule=self.kind,
            min_ratio=self.min_ratio,
        )
