"""Training and evaluating image classifiers (the ViT of Part 6) on MNIST or CIFAR-10.

One epoch: shuffle (seeded per epoch), augment on the device, AdamW step with warm-up + cosine,
gradient clipping, label smoothing; then validation. The best epoch on validation accuracy is kept
and restored at the end, then the test set is scored. Everything lands in the run directory.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labformer import io, runs
from labformer.config import JsonConfig, require_non_negative, require_positive_ints, setting
from labformer.data import Augment, ImageData, load_images
from labformer.models.vit import ViT, ViTConfig
from labformer.training import checkpoint as ckpt
from labformer.training.distributed import Cluster, run_on_cluster
from labformer.training.history import History
from labformer.training.optim import build_optimizer, learning_rate
from labformer.training.runtime import AMP_HELP, autocast, maybe_compile, new_run_dir, resolve_amp

__all__ = ["PRESETS", "ClassifyConfig", "Evaluation", "evaluate", "train_classifier"]


@dataclass
class ClassifyConfig(JsonConfig):
    """How a classifier is trained; stored in ``config.json`` under "train"."""

    dataset: Literal["mnist", "cifar10"] = setting("mnist", "the data set")
    data_dir: str | None = setting(None, "MNIST IDX files or the CIFAR-10 archive (default: embedded MNIST / cache)")
    epochs: int = setting(10, "passes over the training set")
    batch_size: int = setting(128, "images per step (the global batch across processes)")
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(0.05, "decoupled; not on biases, norms, position and class tokens")
    warmup_epochs: float = setting(1.0, "linear warm-up length")
    schedule: Literal["cosine", "constant"] = setting("cosine", "learning rate after the warm-up")
    min_lr_ratio: float = setting(0.0, "cosine floor as a fraction of lr")
    label_smoothing: float = setting(0.0, "weight of the uniform distribution in the targets")
    grad_clip: float = setting(1.0, "max global gradient norm; 0 = off")
    augment: Literal["auto", "affine", "crop_flip", "none"] = setting(
        "auto", "training augmentation; auto = affine for MNIST, crop_flip for CIFAR-10"
    )
    val_size: int = setting(5000, "validation images carved from train")
    train_size: int | None = setting(None, "use only this many training images (quick runs, tests)")
    seed: int = setting(0, "seeds the weights, the validation split and the data order")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto = CUDA if available, else CPU")
    amp: Literal["auto", "none", "bf16"] = setting("auto", AMP_HELP)
    compile: bool = setting(False, "torch.compile the model")
    eval_batch_size: int = setting(1024, "images per batch when scoring")
    checkpoint_every: int = setting(0, "also checkpoint every N steps within an epoch (0: at epoch ends only)")

    def __post_init__(self) -> None:
        require_positive_ints(epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.train_size is not None:
            require_positive_ints(train_size=self.train_size)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant'; got {self.schedule!r}")
        require_non_negative(
            warmup_epochs=self.warmup_epochs,
            grad_clip=self.grad_clip,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
        )


# Presets: (model overrides, training overrides). "fast": 98.5 % on MNIST in under 3 minutes of a
# 2-core CPU; "best": 99.5 %+ (longer); "lab": the lab outline's demonstration model and recipe.
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "fast": (
        dict(patch_size=7, dim=64, depth=3, num_heads=4, mlp_dim=128),
        dict(epochs=8, batch_size=128, lr=4e-3, weight_decay=0.05, warmup_epochs=0.5, augment="affine"),
    ),
    "best": (
        dict(patch_size=4, dim=128, depth=6, num_heads=8, mlp_dim=256),
        dict(
            epochs=60,
            batch_size=128,
            lr=1e-3,
            weight_decay=0.05,
            warmup_epochs=3,
            augment="affine",
            label_smoothing=0.1,
        ),
    ),
    "lab": (
        dict(patch_size=7, dim=64, depth=6, num_heads=8, mlp_dim=128),
        dict(
            epochs=25,
            batch_size=100,
            lr=3e-3,
            weight_decay=0.0,
            warmup_epochs=0,
            schedule="constant",
            augment="none",
            grad_clip=0.0,
        ),
    ),
}


def preset_configs(
    preset: str, dataset: str, model_overrides: dict, train_overrides: dict
) -> tuple[ViTConfig, ClassifyConfig]:
    """The preset's configs with the dataset's image shape and the user's overrides applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    model_defaults, train_defaults = PRESETS[preset]
    shape = {"mnist": dict(image_size=28, channels=1), "cifar10": dict(image_size=32, channels=3)}
    if dataset not in shape:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(shape)}")
    model_values = {**model_defaults, **shape[dataset], **model_overrides}
    if dataset == "cifar10" and "patch_size" not in model_overrides and 32 % model_values["patch_size"]:
        model_values["patch_size"] = 4
    train = ClassifyConfig(**{**train_defaults, "dataset": dataset, **train_overrides})
    return ViTConfig(**model_values), train


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
) -> Evaluation:
    """Scores ``model`` on ``data``'s ``split`` ("train", "val" or "test") in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    images = getattr(data, split)
    num_classes = len(data.classes)
    losses, probabilities = [], []
    for batch, labels in images.batches(batch_size):
        with autocast(device, amp):
            logits = model(data.normalize(batch.to(device))).float()
        losses.append(F.cross_entropy(logits, labels.to(device), reduction="sum"))
        probabilities.append(logits.softmax(-1).cpu())
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
        self.augment = Augment(kind)
        self.data, self.config, self.device = data, config, device
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Global batch number ``step`` of this epoch: normalised images (B, C, H, W) and labels (B,)."""
        size = self.config.batch_size
        index = self.order[step * size : (step + 1) * size]
        images = self.data.train.images[index].to(self.device, non_blocking=True).float() / 255.0
        images = self.augment(images, self.generator)
        return (images - self.mean) / self.std, self.data.train.labels[index].to(self.device, non_blocking=True)


def _steps_per_epoch(data: ImageData, config: ClassifyConfig) -> int:
    return len(data.train) // config.batch_size


def load_data(config: ClassifyConfig) -> ImageData:
    data = load_images(config.dataset, config.data_dir, val_size=config.val_size, seed=config.seed)
    if config.train_size is not None:
        data = dataclasses.replace(data, train=data.train.subset(slice(0, config.train_size)))
    if config.batch_size > len(data.train):
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the training set ({len(data.train)} images)")
    return data


@dataclass
class _Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed within the current epoch
    best_val_accuracy: float = -1.0
    train_seconds: float = 0.0
    loss_sum: float = 0.0  # running sums of the current epoch (global)
    correct: float = 0.0
    count: float = 0.0
    epoch_seconds: float = 0.0


def train_classifier(
    model_config: ViTConfig | None,
    config: ClassifyConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    data: ImageData | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains a ViT; returns the metrics written to ``metrics.json`` in the run directory.

    Launched by ``torchrun``, every process trains a slice of each global batch (DDP); rank 0 writes.
    """
    return run_on_cluster(config.device, _train, model_config, config, out, resume, preset, data, progress)


def _train(
    cluster: Cluster,
    device: torch.device,
    model_config: ViTConfig | None,
    config: ClassifyConfig,
    out: str | Path | None,
    resume: str | Path | None,
    preset: str | None,
    data: ImageData | None,
    progress: bool,
) -> dict[str, Any]:
    if resume is not None:
        run_dir = Path(resume)
        saved, settings = ckpt.read_resumable_run(run_dir, "vit", config)
        model_config, config = ViTConfig.from_dict(saved["model"]), ClassifyConfig.from_dict(settings)
        preset = saved.get("preset")
    else:
        assert model_config is not None
        run_dir = Path(cluster.share(str(new_run_dir(out, f"vit-{config.dataset}")) if cluster.is_main else None))
    cluster.check_batch(config.batch_size)
    # Decided once from facts (never timed) and saved resolved: resumes and every process train alike.
    config = dataclasses.replace(config, amp=cluster.share(resolve_amp(config.amp, device)))
    amp = config.amp
    data = data or load_data(config)
    torch.manual_seed(config.seed)
    model = ViT(model_config).to(device)
    optimizer = build_optimizer(model, config.lr, config.weight_decay)
    history = History()
    state = _Progress()
    aug_state = None
    if resume is not None:
        state, history, aug_state = _restore(run_dir, model, optimizer)
    elif cluster.is_main:
        io.write_json(
            run_dir / runs.CONFIG,
            {
                "kind": "vit",
                "preset": preset,
                "model": model_config.to_dict(),
                "train": asdict(config),
                "classes": data.classes,
                "mean": data.mean,
                "std": data.std,
            },
        )
    trained = cluster.wrap(maybe_compile(model, config.compile, device), device)
    steps_per_epoch = _steps_per_epoch(data, config)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    local = cluster.local_slice(config.batch_size)
    show = progress and cluster.is_main

    def save(batches: EpochBatches | None) -> None:
        if cluster.is_main:
            _save_checkpoint(run_dir, model, optimizer, state, history, batches)

    while state.epoch < config.epochs:
        model.train()
        batches = EpochBatches(data, config, state.epoch, device)
        if aug_state is not None:  # resumed mid-epoch: continue the augmentation stream where it stopped
            batches.generator.set_state(aug_state)
            aug_state = None
        bar = tqdm(
            total=steps_per_epoch,
            initial=state.step,
            desc=f"Epoch {state.epoch + 1}/{config.epochs}",
            leave=False,
            disable=not show or None,
            unit="batch",
        )
        started = time.perf_counter()
        lr = config.lr
        try:
            while state.step < steps_per_epoch:
                step = state.epoch * steps_per_epoch + state.step
                lr = learning_rate(
                    step,
                    base_lr=config.lr,
                    total_steps=total_steps,
                    warmup_steps=warmup_steps,
                    schedule=config.schedule,
                    min_ratio=config.min_lr_ratio,
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, labels = batches.batch(state.step)
                images, labels = images[local], labels[local]
                with autocast(device, amp):
                    logits = trained(images)
                    loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
                loss_sum, correct, count = cluster.sum(
                    [loss.item() * labels.shape[0], (logits.argmax(-1) == labels).sum().item(), labels.shape[0]], device
                )
                if not math.isfinite(loss_sum):
                    raise ValueError(
                        f"the loss became {loss_sum / count} at epoch {state.epoch + 1}, step "
                        f"{state.step + 1}; lower --lr (now {config.lr}); the last good checkpoint "
                        f"in {run_dir} is intact"
                    )
                optimizer.step()
                state.loss_sum += loss_sum
                state.correct += correct
                state.count += count
                state.step += 1
                bar.update()
                bar.set_postfix(
                    loss=f"{state.loss_sum / state.count:.3f}", acc=f"{100 * state.correct / state.count:.1f}%"
                )
                if (
                    config.checkpoint_every
                    and state.step % config.checkpoint_every == 0
                    and state.step < steps_per_epoch
                ):
                    state.epoch_seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    save(batches)
        except KeyboardInterrupt:
            state.epoch_seconds += time.perf_counter() - started
            save(batches)
            bar.close()
            raise
        bar.close()
        state.epoch_seconds += time.perf_counter() - started
        state.train_seconds += state.epoch_seconds
        val = evaluate(model, data, "val", batch_size=config.eval_batch_size, device=device, amp=amp)
        history.append(
            epoch=state.epoch + 1,
            loss=state.loss_sum / state.count,
            accuracy=state.correct / state.count,
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            lr=lr,
            seconds=state.epoch_seconds,
        )
        if cluster.is_main:
            tqdm.write(
                f"Epoch {state.epoch + 1}/{config.epochs}  {state.epoch_seconds:.1f}s  "
                f"loss {state.loss_sum / state.count:.3f}  acc {100 * state.correct / state.count:.1f}%  "
                f"val_loss {val.loss:.3f}  val_acc {100 * val.accuracy:.1f}%  lr {lr:.1e}"
            )
        if val.accuracy > state.best_val_accuracy:
            state.best_val_accuracy = val.accuracy
            if cluster.is_main:
                io.write_tensors(run_dir / runs.MODEL, model.state_dict(), {"epoch": str(state.epoch + 1)})
        state = _Progress(
            epoch=state.epoch + 1, best_val_accuracy=state.best_val_accuracy, train_seconds=state.train_seconds
        )
        save(None)
    cluster.barrier()
    model.load_state_dict(io.read_tensors(run_dir / runs.MODEL, "model weights"))
    test = evaluate(model, data, "test", batch_size=config.eval_batch_size, device=device, amp=amp)
    metrics = {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "best_val_accuracy": state.best_val_accuracy,
        "epochs": config.epochs,
        "train_seconds": state.train_seconds,
        "images_per_second": steps_per_epoch * config.batch_size * config.epochs / max(state.train_seconds, 1e-9),
        **cluster.run_facts(model, device, amp),
    }
    if cluster.is_main:
        history.save(run_dir)
        io.write_json(run_dir / runs.METRICS, metrics)
        print(
            f"test_acc {100 * test.accuracy:.2f}%  test_loss {test.loss:.4f}  ({state.train_seconds:.0f}s of "
            f"training) -> {run_dir}"
        )
        from labformer.plots import save_classifier_figures  # matplotlib only when figures are drawn

        save_classifier_figures(run_dir, model, data, history, test)
    return metrics


def _save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: _Progress,
    history: History,
    batches: EpochBatches | None,
) -> None:
    extra = {"rng.augment": batches.generator.get_state()} if batches is not None else {}
    meta = {"progress": asdict(state), "history": history.rows}
    ckpt.save_training_state(run_dir / runs.CHECKPOINT, model, optimizer, meta, extra)


def _restore(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[_Progress, History, Tensor | None]:
    meta, tensors = ckpt.load_training_state(run_dir / runs.CHECKPOINT, model, optimizer)
    return _Progress(**meta["progress"]), History(meta["history"]), tensors.get("rng.augment")
