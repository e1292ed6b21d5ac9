"""What a kind of model brings to the :class:`~labformer.training.trainer.Trainer`: its batches, loss,
evaluation and how it reports them. ``ClassifyTask`` (training/classify.py) and ``LanguageTask``
(training/language.py) are the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor, nn

if TYPE_CHECKING:
    from labformer.training.progress import Progress
    from labformer.training.trainer import Trainer

__all__ = ["Task"]


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
