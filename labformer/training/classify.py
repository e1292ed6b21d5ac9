"""Training and evaluating image classifiers (the ViT of Part 6) on MNIST or CIFAR-10.

One epoch: shuffle (seeded per epoch), augment on the device, AdamW step with warm-up + cosine,
gradient clipping, label smoothing; then validation. The best epoch on validation accuracy is kept
and restored at the end, then the test set is scored. Everything lands in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labformer.data import Augment, ImageData, load_images
from labformer.models.vit import ViT, ViTConfig
from labformer.training import checkpoint as ckpt
from labformer.training.history import History
from labformer.training.optim import build_optimizer, learning_rate
from labformer.training.runtime import autocast, maybe_compile, new_run_dir, resolve_device

__all__ = ["PRESETS", "ClassifyConfig", "Evaluation", "evaluate", "train_classifier"]


@dataclass
class ClassifyConfig:
    """How a classifier is trained; stored in ``config.json`` under "train"."""

    dataset: str = "mnist"  # "mnist" or "cifar10"
    data_dir: str | None = None  # IDX files / CIFAR archive; None = embedded MNIST or download cache
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05  # decoupled; not on biases, norms, position and class tokens
    warmup_epochs: float = 1.0  # linear warm-up length
    schedule: str = "cosine"  # "cosine" or "constant" after warm-up
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    augment: str = "auto"  # "auto" (affine for MNIST, crop_flip for CIFAR-10), "affine", "crop_flip", "none"
    val_size: int = 5000  # validation images carved from train
    train_size: int | None = None  # use only this many training images (quick runs, tests)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    amp: str = "none"  # "none" or "bf16"
    compile: bool = False  # torch.compile the model
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.train_size is not None and self.train_size <= 0:
            raise ValueError(f"train_size must be positive; got {self.train_size}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant'; got {self.schedule!r}")
        if self.warmup_epochs < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("warmup_epochs, grad_clip and weight_decay must be >= 0; got "
                             f"{self.warmup_epochs}, {self.grad_clip}, {self.weight_decay}")


# Presets: (model overrides, training overrides). "fast": 98.5 % on MNIST in under 3 minutes of a
# 2-core CPU; "best": 99.5 %+ (longer); "lab": the lab outline's demonstration model and recipe.
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "fast": (
        dict(patch_size=7, dim=64, depth=4, num_heads=4, mlp_dim=128),
        dict(epochs=6, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=0.5, augment="none",
             label_smoothing=0.0),
    ),
    "best": (
        dict(patch_size=4, dim=128, depth=6, num_heads=8, mlp_dim=256),
        dict(epochs=60, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=3, augment="affine",
             label_smoothing=0.1),
    ),
    "lab": (
        dict(patch_size=7, dim=64, depth=6, num_heads=8, mlp_dim=128),
        dict(epochs=25, batch_size=100, lr=3e-3, weight_decay=0.0, warmup_epochs=0, schedule="constant",
             augment="none", grad_clip=0.0),
    ),
}


def preset_configs(preset: str, dataset: str, model_overrides: dict, train_overrides: dict) -> tuple[ViTConfig, ClassifyConfig]:
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
def evaluate(model: nn.Module, data: ImageData, split: str, *, batch_size: int = 1024,
             device: torch.device | None = None, amp: str = "none") -> Evaluation:
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


def _train_batches(data: ImageData, config: ClassifyConfig, epoch: int, device: torch.device):
    """This epoch's shuffled, augmented, normalised batches (seeded by (seed, epoch))."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(len(data.train), generator=generator)
    augment_generator = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + epoch)
    kind = config.augment
    if kind == "auto":
        kind = "affine" if data.name == "mnist" else "crop_flip"
    augment = Augment(kind)
    for images, labels in data.train.batches(config.batch_size, order=order, drop_last=len(data.train) > config.batch_size):
        images = images.to(device, non_blocking=True).float() / 255.0
        images = augment(images, augment_generator)
        mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        yield (images - mean) / std, labels.to(device, non_blocking=True)


def _steps_per_epoch(data: ImageData, config: ClassifyConfig) -> int:
    n = len(data.train)
    return n // config.batch_size if n > config.batch_size else 1


def load_data(config: ClassifyConfig) -> ImageData:
    data = load_images(config.dataset, config.data_dir, val_size=config.val_size, seed=config.seed)
    if config.train_size is not None:
        data = dataclasses.replace(data, train=data.train.subset(slice(0, config.train_size)))
    if config.batch_size > len(data.train):
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the training set ({len(data.train)} images)")
    return data


def train_classifier(model_config: ViTConfig, config: ClassifyConfig, *, out: str | Path | None = None,
                     resume: str | Path | None = None, preset: str | None = None,
                     data: ImageData | None = None, progress: bool = True) -> dict[str, Any]:
    """Trains a ViT; returns the metrics written to ``metrics.json`` in the run directory."""
    device = resolve_device(config.device)
    if resume is not None:
        run_dir = Path(resume)
        saved = ckpt.read_json(run_dir / "config.json", "run config")
        model_config = ViTConfig.from_dict(saved["model"])
        config = ClassifyConfig(**{**saved["train"], **{k: getattr(config, k) for k in ("device", "amp", "compile")}})
        preset = saved.get("preset")
    else:
        run_dir = new_run_dir(out, f"vit-{config.dataset}")
    data = data or load_data(config)
    torch.manual_seed(config.seed)
    model = ViT(model_config).to(device)
    optimizer = build_optimizer(model, config.lr, config.weight_decay)
    history = History()
    start_epoch, best_accuracy, train_seconds = 0, -1.0, 0.0
    if resume is not None:
        start_epoch, best_accuracy, train_seconds, history = _restore(run_dir, model, optimizer)
    else:
        ckpt.write_json(run_dir / "config.json", {"kind": "vit", "preset": preset, "model": model_config.to_dict(),
                                                  "train": asdict(config), "classes": data.classes,
                                                  "mean": data.mean, "std": data.std})
    compiled = maybe_compile(model, config.compile)
    steps_per_epoch = _steps_per_epoch(data, config)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    images_seen = 0
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started = time.perf_counter()
        loss_sum = correct = count = 0.0
        lr = config.lr
        bar = tqdm(total=steps_per_epoch, desc=f"Epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not progress or None, unit="batch")
        for step_in_epoch, (images, labels) in enumerate(_train_batches(data, config, epoch, device)):
            step = epoch * steps_per_epoch + step_in_epoch
            lr = learning_rate(step, base_lr=config.lr, total_steps=total_steps, warmup_steps=warmup_steps,
                               schedule=config.schedule, min_ratio=config.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, config.amp):
                logits = compiled(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
            optimizer.step()
            batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise ValueError(f"the loss became {batch_loss} at epoch {epoch + 1}, step {step_in_epoch + 1}; "
                                 f"lower --lr (now {config.lr}); the last good checkpoint in {run_dir} is intact")
            n = labels.shape[0]
            loss_sum += batch_loss * n
            correct += (logits.argmax(-1) == labels).sum().item()
            count += n
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{100 * correct / count:.1f}%")
        bar.close()
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        images_seen += count
        val = evaluate(model, data, "val", batch_size=config.eval_batch_size, device=device, amp=config.amp)
        history.append(epoch=epoch + 1, loss=loss_sum / count, accuracy=correct / count, val_loss=val.loss,
                       val_accuracy=val.accuracy, lr=lr, seconds=epoch_seconds)
        tqdm.write(f"Epoch {epoch + 1}/{config.epochs}  {epoch_seconds:.1f}s  loss {loss_sum / count:.3f}  "
                   f"acc {100 * correct / count:.1f}%  val_loss {val.loss:.3f}  val_acc {100 * val.accuracy:.1f}%  "
                   f"lr {lr:.1e}")
        if val.accuracy > best_accuracy:
            best_accuracy = val.accuracy
            ckpt.write_tensors(run_dir / "model.safetensors", model.state_dict(), {"epoch": str(epoch + 1)})
        _save_checkpoint(run_dir, model, optimizer, epoch + 1, best_accuracy, train_seconds, history)
    model.load_state_dict(ckpt.read_tensors(run_dir / "model.safetensors", "model weights"))
    test = evaluate(model, data, "test", batch_size=config.eval_batch_size, device=device, amp=config.amp)
    history.save(run_dir)
    metrics = {
        "test_accuracy": test.accuracy, "test_loss": test.loss, "best_val_accuracy": best_accuracy,
        "epochs": config.epochs, "train_seconds": train_seconds,
        "images_per_second": len(data.train) * config.epochs / train_seconds if train_seconds else 0.0,
        "parameters": sum(p.numel() for p in model.parameters()), "device": str(device),
    }
    ckpt.write_json(run_dir / "metrics.json", metrics)
    print(f"test_acc {100 * test.accuracy:.2f}%  test_loss {test.loss:.4f}  ({train_seconds:.0f}s of training) "
          f"-> {run_dir}")
    from labformer.plots import save_classifier_figures  # matplotlib only when figures are drawn

    save_classifier_figures(run_dir, model, data, history, test)
    return metrics


def _save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                     best_accuracy: float, train_seconds: float, history: History) -> None:
    optimizer_tensors, optimizer_rest = ckpt.flatten_optimizer(optimizer.state_dict())
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **optimizer_tensors, **ckpt.rng_tensors()}
    state = {"epoch": epoch, "best_val_accuracy": best_accuracy, "train_seconds": train_seconds,
             "optimizer": optimizer_rest, "history": history.rows}
    ckpt.write_tensors(run_dir / "checkpoint.safetensors", tensors, {"state": json.dumps(state)})


def _restore(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, float, float, History]:
    path = run_dir / "checkpoint.safetensors"
    tensors = ckpt.read_tensors(path, "training checkpoint")
    state = json.loads(ckpt.read_metadata(path, "training checkpoint")["state"])
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(ckpt.unflatten_optimizer(tensors, state["optimizer"]))
    ckpt.restore_rng(tensors)
    return state["epoch"], state["best_val_accuracy"], state["train_seconds"], History(state["history"])


def config_fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}
