"""What a kind of model brings to the :class:`~labformer.training.trainer.Trainer`: its batches, loss,
evaluation and how it reports them. ``ClassifyTask`` (training/classify.py), ``LanguageTask``
(training/language.py) and ``TranslationTask`` (training/translation.py) are the three; the last two
count steps and draw random batches from one seeded stream (:class:`RandomBatches`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from labformer.training.progress import Progress
    from labformer.training.trainer import Trainer

__all__ = ["RandomBatches", "Task"]


class Task(Protocol):
    """What a kind of model brings to the Trainer (see training/classify.py and training/language.py)."""

    kind: str  # "vit", "gpt": the run kind
    model: nn.Module
    batch_size: int  # the global batch
    total_steps: int
    eval_every: int  # steps between evaluations
    monitor: str  # the history column that picks the best weights ...
    maximize: bool  # ... and whether higher is better
    sums: tuple[str, ...]  # the task's own numbers summed over steps (after loss_sum, count)
    unit: str  # what the progress bar counts

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Global batch number ``step`` (0-based): inputs and targets, batch first."""

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The mean loss of one batch and the task's own sums (one 0-d tensor per name in ``sums``)."""

    def evaluate(self, progress: Progress) -> dict[str, float]:
        """The history row of an evaluation at ``progress.step`` (model in eval mode, then back)."""

    def describe(self, row: dict[str, float]) -> str:
        """One printed line for a history row."""

    def span(self, step: int) -> tuple[str, int, int]:
        """The progress bar holding ``step``: its label, first step and end (an epoch, or the run)."""

    def postfix(self, running: dict[str, float]) -> dict[str, str]:
        """Numbers shown beside the progress bar."""

    def stream_state(self, step: int) -> dict[str, Tensor]:
        """The data stream's generator states after ``step`` steps (saved in the checkpoint)."""

    def restore_stream(self, step: int, tensors: dict[str, Tensor]) -> None:
        """Continues the data stream from the saved states of a checkpoint at ``step``."""

    def where(self, step: int) -> str:
        """Where step ``step`` (0-based) is, for error messages: "step 12", "epoch 2, step 5"."""

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """The run's metrics, with the best weights loaded (rank 0 may also write its own files)."""

    def summary(self, metrics: dict[str, Any]) -> str:
        """The line printed at the end."""


class RandomBatches:
    """The parts of a task that counts steps (no epochs) and draws each batch from one seeded generator,
    ``self.batches``: one progress bar over the run, "step N" in messages, the running loss beside the
    bar, and the generator's state in the checkpoint so a resumed run draws the same batches."""

    label: str  # the progress bar's label, e.g. "train gpt"
    digits = 3  # of the running loss shown beside the bar
    total_steps: int
    batches: torch.Generator

    def span(self, step: int) -> tuple[str, int, int]:
        return self.label, 0, self.total_steps

    def postfix(self, running: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{running['loss_sum'] / max(running['count'], 1):.{self.digits}f}"}

    def where(self, step: int) -> str:
        return f"step {step + 1}"

    def stream_state(self, step: int) -> dict[str, Tensor]:
        return {"rng.batches": self.batches.get_state()}

    def restore_stream(self, step: int, tensors: dict[str, Tensor]) -> None:
        self.batches.set_state(tensors["rng.batches"])
