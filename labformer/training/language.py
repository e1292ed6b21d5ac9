"""Training the character GPT (Part 5): iterations of random windows, periodic evaluation.

Every ``eval_interval`` steps the mean train and validation losses over ``eval_iters`` batches are
printed (``step 1500: train loss 1.512, val loss 1.698``); the best validation weights are kept in
``model.safetensors`` and a resumable checkpoint is written. At the end the best weights are also
scored on every character of the validation split (``val_loss_full``, what ``labformer evaluate`` reports):
the random batches estimate it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer import io, runs
from labformer.data.text import CharTokenizer, TextData, load_text
from labformer.models.gpt import GPT, GPTConfig
from labformer.training.callbacks import Callback
from labformer.training.distributed import Cluster, run_on_cluster
from labformer.training.optim import Schedule, build_optimizer
from labformer.training.progress import Progress
from labformer.training.recipes import GPT_PRESETS as PRESETS
from labformer.training.recipes import LanguageConfig
from labformer.training.recipes import gpt_configs as preset_configs
from labformer.training.runtime import autocast, removed_if_empty_on_failure, resolve_muon_precision
from labformer.training.task import RandomBatches
from labformer.training.trainer import Trainer, open_run

__all__ = [
    "PRESETS",
    "LanguageConfig",
    "LanguageTask",
    "estimate_loss",
    "gpt_optimizer",
    "next_token_loss",
    "preset_configs",
    "train_language_model",
]


@torch.no_grad()
def estimate_loss(
    model: nn.Module,
    data: TextData,
    config: LanguageConfig,
    generator: torch.Generator,
    device: torch.device,
    amp: str = "none",
    block_size: int | None = None,
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split (windows of ``block_size``, by default
    the model's), in eval mode."""
    block_size = block_size or model.config.block_size
    model.eval()
    losses = {}
    for split in ("train", "val"):
        total = 0.0
        for _ in range(config.eval_iters):
            x, y = data.batch(split, config.batch_size, block_size, generator, device)
            with autocast(device, amp):
                total += next_token_loss(model, x, y).item()
        losses[split] = total / config.eval_iters
    model.train()
    return losses


class LanguageTask(RandomBatches):
    """Language modelling for the :class:`~labformer.training.trainer.Trainer`: each step draws random
    windows of the training text (one seeded stream); every ``eval_interval`` steps the mean train and
    validation losses over ``eval_iters`` batches; the lowest validation loss wins.

    Args:
        model: maps token ids (B, T) to next-token logits (B, T, vocab).
        data: the corpus; config: the recipe; block_size: the window length T; device: where batches go.
    """

    kind, monitor, maximize, sums, unit = "gpt", "val_loss", False, (), "step"
    label = "train gpt"

    def __init__(
        self, model: nn.Module, data: TextData, config: LanguageConfig, block_size: int, device: torch.device
    ) -> None:
        self.model, self.data, self.config, self.block_size, self.device = model, data, config, block_size, device
        self.batch_size, self.total_steps, self.eval_every = config.batch_size, config.iters, config.eval_interval
        self.batches = torch.Generator().manual_seed(config.seed)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        return self.data.batch("train", self.batch_size, self.block_size, self.batches, self.device)

    def loss(self, model: nn.Module, tokens: Tensor, targets: Tensor) -> tuple[Tensor, list[Tensor]]:
        return next_token_loss(model, tokens, targets), []

    def evaluate(self, progress: Progress) -> dict[str, float]:
        # Batches seeded by the step, so a resumed run draws the same ones.
        generator = torch.Generator().manual_seed(self.config.seed + 1 + progress.step)
        losses = estimate_loss(
            self.model, self.data, self.config, generator, self.device, self.config.amp, self.block_size
        )
        return {
            "step": progress.step,
            "train_loss": losses["train"],
            "val_loss": losses["val"],
            "lr": progress.lr,
            "seconds": progress.train_seconds,
        }

    def describe(self, row: dict[str, float]) -> str:
        return f"step {row['step']}: train loss {row['train_loss']:.3f}, val loss {row['val_loss']:.3f}"

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        best = min(trainer.history.rows, key=lambda row: row["val_loss"])
        progress, tokens_per_step = trainer.progress, self.batch_size * self.block_size
        if trainer.cluster.is_main and isinstance(self.model, GPT):  # a sample of the best weights' writing
            prompt = self.data.tokenizer.encode("\n")[None].to(self.device)
            generator = torch.Generator(self.device).manual_seed(self.config.seed)
            sample = self.model.generate(prompt, 500, temperature=0.8, generator=generator)
            text = self.data.tokenizer.decode(sample[0, 1:].tolist())
            io.atomic_write(trainer.run_dir / runs.SAMPLE, lambda p: p.write_text(text))
        seconds = progress.train_seconds
        full = {}
        if isinstance(self.model, GPT):  # the best weights on every character of the validation split, once
            total, count = self.model.sequence_loss(self.data.val)
            full = {"val_loss_full": total / count}
        return {
            "val_loss": best["val_loss"],
            **full,
            "train_loss": best["train_loss"],
            "best_step": best["step"],
            "iters": progress.step,
            "train_seconds": seconds,
            "tokens_per_second": tokens_per_step * progress.step / seconds if seconds else 0.0,
            **({"muon_precision": self.config.muon_precision} if self.config.optimizer == "muon" else {}),
        }

    def summary(self, metrics: dict[str, Any]) -> str:
        full = f", whole validation split {metrics['val_loss_full']:.3f}" if "val_loss_full" in metrics else ""
        return (
            f"val loss {metrics['val_loss']:.3f} (train {metrics['train_loss']:.3f}{full}) after {metrics['iters']} "
            f"steps, {metrics['train_seconds']:.0f}s of training, {metrics['tokens_per_second']:.0f} tokens/s"
        )


def train_language_model(
    model_values: dict,
    config: LanguageConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    progress: bool = True,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
) -> dict[str, Any]:
    """Trains a GPT; returns the metrics written to ``metrics.json``.

    ``callbacks`` hook into the loop, e.g. ``labformer.plots.CurveFigure()`` draws the loss curves.
    Launched by ``torchrun``, every process trains a slice of each global batch (DDP); rank 0 writes.
    """

    def train(cluster: Cluster, device: torch.device) -> dict[str, Any]:
        nonlocal config, preset
        run_dir, saved, config = open_run(cluster, device, "gpt", config, out=out, resume=resume, name="gpt")
        with removed_if_empty_on_failure(run_dir):  # a run that fails before it starts leaves nothing
            if saved is not None:
                tokenizer = CharTokenizer(io.read_json(run_dir / runs.VOCAB, "vocabulary"))
                data = load_text(config.text, block_size=saved["model"]["block_size"], tokenizer=tokenizer)
                model_config, preset = GPTConfig.from_dict(saved["model"]), saved.get("preset")
            else:
                data = load_text(config.text, block_size=model_values["block_size"])
                model_config = GPTConfig(**{**model_values, "vocab_size": len(data.tokenizer)})
            torch.manual_seed(config.seed)
            task = LanguageTask(GPT(model_config).to(device), data, config, model_config.block_size, device)
            optimizer = gpt_optimizer(task.model, config, device)
            schedule = Schedule(config.lr, config.iters, config.warmup_iters, "cosine", config.min_lr_ratio)
            trainer = Trainer.for_config(
                task, optimizer, schedule, config, run_dir=run_dir, device=device, cluster=cluster, progress=progress,
                callbacks=callbacks,
            )  # fmt: skip
            if saved is not None:
                trainer.restore()
            elif cluster.is_main:
                record = {"kind": "gpt", "preset": preset, "model": model_config.to_dict(), "train": asdict(config)}
                io.write_json(run_dir / runs.CONFIG, record)
                io.write_json(run_dir / runs.VOCAB, data.tokenizer.chars)
            trainer.fit()
            return trainer.finish()

    return run_on_cluster(config.device, train)


def gpt_optimizer(model: nn.Module, config: LanguageConfig, device: torch.device) -> Any:  # noqa: ANN401
    """The GPT's optimiser: ``config.optimizer`` (AdamW, or Muon for the layers' matrices and AdamW for the
    rest) with its learning rate and weight decay, betas (0.9, 0.99), Muon's precision resolved for
    ``device`` (a no-op when the run's config holds it resolved already)."""
    return build_optimizer(
        model, config.lr, config.weight_decay, (0.9, 0.99), kind=config.optimizer,
        muon_precision=resolve_muon_precision(config.muon_precision, device),
    )  # fmt: skip


def next_token_loss(model: nn.Module, tokens: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of ``model``'s logits for ``tokens`` (B, T) against ``targets`` (B, T)."""
    return F.cross_entropy(model(tokens).flatten(0, 1).float(), targets.flatten())
