"""Training and evaluating image classifiers (the ViT of Part 6) on MNIST or CIFAR-10.

One epoch: shuffle (seeded per epoch), augment on the device, AdamW step with warm-up + cosine,
gradient clipping, label smoothing; then validation. The best epoch on validation accuracy is kept
and restored at the end, then the test set is scored. Everything lands in the run directory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer import io, runs
from labformer.data import Augment, ImageData, load_run_images
from labformer.data.augment import shifted_views
from labformer.data.randaugment import RandAugment
from labformer.models.vit import ViT, ViTConfig
from labformer.training.callbacks import Callback
from labformer.training.distributed import Cluster, run_on_cluster
from labformer.training.optim import Schedule, build_optimizer
from labformer.training.progress import Progress
from labformer.training.recipes import VIT_PRESETS as PRESETS
from labformer.training.recipes import ClassifyConfig
from labformer.training.recipes import vit_configs as preset_configs
from labformer.training.runtime import autocast, removed_if_empty_on_failure
from labformer.training.trainer import Trainer, open_run

__all__ = [
    "PRESETS",
    "ClassifyConfig",
    "ClassifyTask",
    "Evaluation",
    "evaluate",
    "load_data",
    "preset_configs",
    "train_classifier",
]


@dataclass
class Evaluation:
    """Loss, accuracy, confusion matrix (true × predicted) and per-image results of one split."""

    loss: float
    accuracy: float
    confusion: Tensor
    probabilities: Tensor  # (N, num_classes)
    labels: Tensor  # (N,)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageData,
    split: str,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    amp: str = "none",
    tta_shift: int = 0,
    tta_flip: bool = False,
) -> Evaluation:
    """Scores ``model`` on ``data``'s ``split`` ("train", "val" or "test") in eval mode.

    ``tta_shift``: test-time augmentation, the mean of the probabilities of each picture and of it moved
    this many pixels right, left, down and up (:func:`~labformer.data.augment.shifted_views`); the loss
    is then the cross-entropy of that mean. 0: the picture alone. ``tta_flip``: each of those views also
    mirrored left-right.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    images = getattr(data, split)
    num_classes = len(data.classes)
    losses, probabilities = [], []
    for batch, labels in images.batches(batch_size):
        views = shifted_views(batch.to(device), tta_shift, tta_flip)
        with autocast(device, amp):
            logits = [model(data.normalize(view)).float() for view in views]
        if len(views) == 1:
            log_probs = logits[0].log_softmax(-1)
        else:  # log of the mean probability, computed stably
            log_probs = torch.logsumexp(torch.stack([x.log_softmax(-1) for x in logits]), 0) - math.log(len(views))
        losses.append(F.nll_loss(log_probs, labels.to(device), reduction="sum"))
        probabilities.append(log_probs.exp().cpu())
    model.train(was_training)
    probs = torch.cat(probabilities) if probabilities else torch.zeros(0, num_classes)
    labels = images.labels
    predicted = probs.argmax(-1)
    confusion = torch.bincount(labels * num_classes + predicted, minlength=num_classes**2).view(num_classes, -1)
    n = max(1, len(labels))
    return Evaluation(float(sum(losses)) / n, float((predicted == labels).float().sum()) / n, confusion, probs, labels)


class EpochBatches:
    """One epoch's shuffled, augmented, normalised global batches (seeded by (seed, epoch)).

    The augmentation generator's state can be saved and restored, so a run resumed mid-epoch draws
    exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, data: ImageData, config: ClassifyConfig, epoch: int, device: torch.device) -> None:
        seed = config.seed * 1_000_003 + epoch
        self.order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
        self.generator = torch.Generator(device=device).manual_seed(seed)
        kind = config.augment
        if kind == "auto":
            kind = "affine" if data.name == "mnist" else "crop_flip"
        randaugment = RandAugment(config.randaugment_ops, config.randaugment_magnitude)
        self.augment = Augment.scaled(
            kind, config.augment_strength, config.augment_stroke, config.augment_elastic, randaugment
        )
        self.data, self.config, self.device, self.epoch = data, config, device, epoch
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Global batch number ``step`` of this epoch: normalised images (B, C, H, W) and labels (B,)."""
        size = self.config.batch_size
        index = self.order[step * size : (step + 1) * size]
        images = self.augment(self.data.train.images[index].to(self.device, non_blocking=True), self.generator)
        return (images - self.mean) / self.std, self.data.train.labels[index].to(self.device, non_blocking=True)


def load_data(config: ClassifyConfig) -> ImageData:
    """The data set ``config`` names, its validation split carved and the training set cut to ``train_size``
    images drawn at random (seeded; a folder's are stored class by class, so its first ones are one class)."""
    data = load_run_images(dataclasses.asdict(config))
    if config.train_size is not None and config.train_size < len(data.train):
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 - 1)  # not the epochs' (seed, epoch)
        keep = torch.randperm(len(data.train), generator=generator)[: config.train_size].sort().values
        data = dataclasses.replace(data, train=data.train.subset(keep))
    if config.batch_size > len(data.train):
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the training set ({len(data.train)} images)")
    return data


class ClassifyTask:
    """Image classification for the :class:`~labformer.training.trainer.Trainer`: an epoch is
    ``len(train) // batch_size`` steps, evaluated on the validation split; the best validation accuracy wins.

    Args:
        model: maps normalised images (B, C, H, W) to logits (B, num_classes).
        data: the splits; config: the recipe; device: where batches go.
    """

    kind, monitor, maximize, sums, unit = "vit", "val_accuracy", True, ("correct",), "batch"

    def __init__(self, model: nn.Module, data: ImageData, config: ClassifyConfig, device: torch.device) -> None:
        self.model, self.data, self.config, self.device = model, data, config, device
        self.batch_size = config.batch_size
        self.eval_every = len(data.train) // config.batch_size  # steps per epoch
        self.total_steps = self.eval_every * config.epochs
        self.test: Evaluation | None = None  # scored by finish()
        self._epoch: EpochBatches | None = None

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, index = divmod(step, self.eval_every)
        if self._epoch is None or self._epoch.epoch != epoch:
            self._epoch = EpochBatches(self.data, self.config, epoch, self.device)
        return self._epoch.batch(index)

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, list[Tensor]]:
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.config.label_smoothing)
        return loss, [(logits.argmax(-1) == labels).sum()]

    def evaluate(self, progress: Progress) -> dict[str, float]:
        val = self._score("val")
        running = progress.running
        return {
            "epoch": progress.step // self.eval_every,
            "loss": running["loss_sum"] / running["count"],
            "accuracy": running["correct"] / running["count"],
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "lr": progress.lr,
            "seconds": progress.interval_seconds,
        }

    def describe(self, row: dict[str, float]) -> str:
        return (
            f"Epoch {row['epoch']}/{self.config.epochs}  {row['seconds']:.1f}s  loss {row['loss']:.3f}  "
            f"acc {100 * row['accuracy']:.1f}%  val_loss {row['val_loss']:.3f}  "
            f"val_acc {100 * row['val_accuracy']:.1f}%  lr {row['lr']:.1e}"
        )

    def span(self, step: int) -> tuple[str, int, int]:
        epoch = step // self.eval_every
        return f"Epoch {epoch + 1}/{self.config.epochs}", epoch * self.eval_every, (epoch + 1) * self.eval_every

    def postfix(self, running: dict[str, float]) -> dict[str, str]:
        count = max(running["count"], 1)
        return {"loss": f"{running['loss_sum'] / count:.3f}", "acc": f"{100 * running['correct'] / count:.1f}%"}

    def where(self, step: int) -> str:
        epoch, index = divmod(step, self.eval_every)
        return f"epoch {epoch + 1}, step {index + 1}"

    def stream_state(self, step: int) -> dict[str, Tensor]:
        within = self._epoch is not None and step % self.eval_every and self._epoch.epoch == step // self.eval_every
        return {"rng.augment": self._epoch.generator.get_state()} if within else {}  # type: ignore[union-attr]

    def restore_stream(self, step: int, tensors: dict[str, Tensor]) -> None:
        if step % self.eval_every and "rng.augment" in tensors:  # mid-epoch: go on with the same augmentations
            self._epoch = EpochBatches(self.data, self.config, step // self.eval_every, self.device)
            self._epoch.generator.set_state(tensors["rng.augment"])

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        self.test = test = self._score("test", self.config.tta_shift, self.config.tta_flip)
        progress, images = trainer.progress, self.total_steps * self.batch_size
        plain = {}
        if self.config.tta_shift or self.config.tta_flip:  # also without test-time augmentation, to compare
            alone = self._score("test")
            plain = {"test_accuracy_no_tta": alone.accuracy, "test_loss_no_tta": alone.loss}
        return {
            "test_accuracy": test.accuracy,
            "test_loss": test.loss,
            **plain,
            "best_val_accuracy": progress.best,
            "epochs": self.config.epochs,
            "train_seconds": progress.train_seconds,
            "images_per_second": images / max(progress.train_seconds, 1e-9),
        }

    def summary(self, metrics: dict[str, Any]) -> str:
        tta = ""
        if "test_accuracy_no_tta" in metrics:
            views = [f"{self.config.tta_shift}-pixel shifts"] if self.config.tta_shift else []
            views += ["mirroring"] if self.config.tta_flip else []
            tta = f" with {' and '.join(views)} ({100 * metrics['test_accuracy_no_tta']:.2f}% without)"
        return (
            f"test_acc {100 * metrics['test_accuracy']:.2f}%{tta}  test_loss {metrics['test_loss']:.4f}  "
            f"({metrics['train_seconds']:.0f}s of training)"
        )

    def _score(self, split: str, tta_shift: int = 0, tta_flip: bool = False) -> Evaluation:
        return evaluate(
            self.model,
            self.data,
            split,
            batch_size=self.config.eval_batch_size,
            device=self.device,
            amp=self.config.amp,
            tta_shift=tta_shift,
            tta_flip=tta_flip,
        )


def train_classifier(
    model_config: ViTConfig | None,
    config: ClassifyConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    data: ImageData | None = None,
    progress: bool = True,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
) -> dict[str, Any]:
    """Trains a ViT; returns the metrics written to ``metrics.json`` in the run directory.

    ``callbacks`` hook into the loop, e.g. ``labformer.plots.ClassifierFigures()`` draws the figures.
    Launched by ``torchrun``, every process trains a slice of each global batch (DDP); rank 0 writes.
    """

    def train(cluster: Cluster, device: torch.device) -> dict[str, Any]:
        nonlocal model_config, config, preset, data
        run_dir, saved, config = open_run(
            cluster, device, "vit", config, out=out, resume=resume, name=f"vit-{config.dataset}"
        )
        with removed_if_empty_on_failure(run_dir):  # a run that fails before it starts leaves nothing
            if saved is not None:
                model_config, preset = ViTConfig.from_dict(saved["model"]), saved.get("preset")
            assert model_config is not None
            data = data or load_data(config)
            if config.tta_shift >= data.image_size:  # found now, not after the training
                raise ValueError(
                    f"tta_shift must be smaller than the images' {data.image_size} pixels; got {config.tta_shift}"
                )
            torch.manual_seed(config.seed)
            task = ClassifyTask(ViT(model_config).to(device), data, config, device)
            optimizer = build_optimizer(task.model, config.lr, config.weight_decay)
            warmup = round(config.warmup_epochs * task.eval_every)
            schedule = Schedule(config.lr, task.total_steps, warmup, config.schedule, config.min_lr_ratio)
            trainer = Trainer.for_config(
                task, optimizer, schedule, config, run_dir=run_dir, device=device, cluster=cluster, progress=progress,
                callbacks=callbacks,
            )  # fmt: skip
            if saved is not None:
                trainer.restore()
            elif cluster.is_main:
                record = {"kind": "vit", "preset": preset, "model": model_config.to_dict(), "train": asdict(config)}
                io.write_json(
                    run_dir / runs.CONFIG, {**record, "classes": data.classes, "mean": data.mean, "std": data.std}
                )
            trainer.fit()
            return trainer.finish()

    return run_on_cluster(config.device, train)
