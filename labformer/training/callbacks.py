"""Hooks into the Trainer's loop: the base class, the progress bar and the evaluation lines. Figures are callbacks too
(``labformer.plots``), so training never imports matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from labformer.training.trainer import Trainer

__all__ = ["Callback", "EvaluationLog", "ProgressBar"]


class Callback:
    """Hooks into the loop; override what you need. Every process calls them, rank 0 only ``on_end``."""

    def on_step(self, trainer: Trainer) -> None:
        """After each optimiser step (``trainer.progress.step`` steps done)."""

    def on_evaluation(self, trainer: Trainer, row: dict[str, float]) -> None:
        """After an evaluation, before its row is recorded (raising here interrupts the evaluation)."""

    def on_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Once the metrics are written (rank 0)."""

    def on_close(self, trainer: Trainer) -> None:
        """When the loop stops, finished or not."""


class ProgressBar(Callback):
    """A tqdm bar per task span (an epoch of the ViT, the whole GPT run) with the running loss."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.end = 0

    def on_step(self, trainer: Trainer) -> None:
        step, task = trainer.progress.step, trainer.task
        if self.bar is None or step > self.end:
            self.on_close(trainer)
            label, first, self.end = task.span(step - 1)
            whole_run = first == 0 and self.end == task.total_steps
            self.bar = tqdm(
                total=self.end - first, initial=step - 1 - first, desc=label, leave=whole_run, unit=task.unit
            )
        self.bar.update()
        self.bar.set_postfix(task.postfix(trainer.progress.running), refresh=False)
        if step == self.end and self.end != task.total_steps:
            self.on_close(trainer)

    def on_close(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EvaluationLog(Callback):
    """Prints the task's line for each evaluation ("Epoch 3/8 …", "step 1500: train loss …")."""

    def on_evaluation(self, trainer: Trainer, row: dict[str, float]) -> None:
        tqdm.write(trainer.task.describe(row))
