"""Where training stands: the one state a checkpoint saves, and how checkpoints written before the
Trainer are read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from labformer.training.optim import Schedule

__all__ = ["RUNNING", "Progress"]

RUNNING = ("loss_sum", "count")  # summed over the steps since the last evaluation, before a task's own sums


@dataclass
class Progress:
    """Where training stands: the one state every checkpoint saves."""

    step: int = 0  # optimiser steps completed
    best: float | None = None  # best value of the task's monitored column so far
    train_seconds: float = 0.0  # training time (evaluations and saves not counted)
    interval_seconds: float = 0.0  # training time since the last evaluation
    evaluated_at: int = 0  # the step of the last evaluation
    lr: float = 0.0  # the learning rate of the last step
    running: dict[str, float] = field(default_factory=dict)  # sums since the last evaluation

    @classmethod
    def from_meta(cls, meta: dict[str, Any], eval_every: int, schedule: Schedule) -> Progress:
        """Reads the progress of a checkpoint, including the two formats of labformer before the Trainer:
        the ViT's (epochs, steps within the epoch) and the GPT's (step, best_val_loss at the top level)."""
        saved = meta.get("progress")
        if saved is not None and "epoch" not in saved:
            return cls(**saved)
        if saved is not None:  # ViT before the Trainer: saved after an epoch's evaluation or within an epoch
            step = saved["epoch"] * eval_every + saved["step"]
            return cls(
                step=step,
                best=saved["best_val_accuracy"] if saved["best_val_accuracy"] >= 0 else None,
                train_seconds=saved["train_seconds"] + saved["epoch_seconds"],
                interval_seconds=saved["epoch_seconds"],
                evaluated_at=saved["epoch"] * eval_every,
                lr=schedule.at(max(step - 1, 0)),
                running={name: saved[name] for name in ("loss_sum", "count", "correct")},
            )
        rows, best = meta["history"], meta["best_val_loss"]  # GPT before the Trainer
        return cls(
            step=meta["step"],
            best=best if math.isfinite(best) else None,
            train_seconds=meta["train_seconds"],
            evaluated_at=int(rows[-1]["step"]) if rows else 0,
            lr=schedule.at(max(meta["step"] - 1, 0)),
        )
