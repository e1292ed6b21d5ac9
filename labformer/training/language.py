"""Training the character GPT (Part 5): iterations of random windows, periodic evaluation.

Every ``eval_interval`` steps the mean train and validation losses over ``eval_iters`` batches are
printed (``step 1500: train loss 1.512, val loss 1.698``); the best validation weights are kept in
``model.safetensors`` and a resumable checkpoint is written.
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
from tqdm.auto import tqdm

from labformer import io, runs
from labformer.config import JsonConfig, require_non_negative, require_positive_ints, setting
from labformer.data.text import CharTokenizer, TextData, load_text
from labformer.models.gpt import GPT, GPTConfig
from labformer.training import checkpoint as ckpt
from labformer.training.distributed import Cluster, run_on_cluster
from labformer.training.history import History
from labformer.training.optim import build_optimizer, learning_rate
from labformer.training.runtime import AMP_HELP, autocast, maybe_compile, new_run_dir, resolve_amp

__all__ = ["PRESETS", "LanguageConfig", "estimate_loss", "train_language_model"]


@dataclass
class LanguageConfig(JsonConfig):
    """How the GPT is trained; stored in ``config.json`` under "train"."""

    text: str | None = setting(None, "UTF-8 corpus file (default: Tiny Shakespeare; $LABFORMER_SHAKESPEARE)")
    iters: int = setting(3000, "optimisation steps")
    batch_size: int = setting(32, "windows per step (the global batch across processes)")
    lr: float = setting(1e-3, "peak learning rate")
    min_lr_ratio: float = setting(0.1, "cosine floor as a fraction of lr")
    warmup_iters: int = setting(100, "linear warm-up steps")
    weight_decay: float = setting(0.1, "decoupled; not on biases, norms and position embeddings")
    grad_clip: float = setting(1.0, "max global gradient norm; 0 = off")
    eval_interval: int = setting(250, "steps between evaluations (and checkpoints)")
    eval_iters: int = setting(50, "batches per split in each evaluation")
    seed: int = setting(1337, "seeds the weights and the batches")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto = CUDA if available, else CPU")
    amp: Literal["auto", "none", "bf16"] = setting("auto", AMP_HELP)
    compile: bool = setting(False, "torch.compile the model")
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0: at each evaluation only)")
    # The only setting that makes a run depend on the machine's speed; no preset uses it.
    time_limit: float | None = setting(
        None, "stop after this many seconds of training, the schedule following the clock (machine-dependent)"
    )

    def __post_init__(self) -> None:
        require_positive_ints(
            iters=self.iters, batch_size=self.batch_size, eval_interval=self.eval_interval, eval_iters=self.eval_iters
        )
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        require_non_negative(
            warmup_iters=self.warmup_iters,
            grad_clip=self.grad_clip,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
        )
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive (seconds); got {self.time_limit}")


# "cpu": a fixed number of steps (7-14 minutes on a 2-core CPU, by its speed); "lab": the lab's model, for GPUs.
# Presets count steps, never seconds: the same command computes the same model on every machine.
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu": (
        # 0.47 M parameters: about compute-optimal for the ~14 M tokens of 3,500 steps.
        dict(block_size=128, dim=96, depth=4, num_heads=4, mlp_dim=384, dropout=0.0),
        dict(iters=3500, batch_size=32, lr=3e-3, warmup_iters=100, eval_interval=250, eval_iters=40),
    ),
    "lab": (
        dict(block_size=256, dim=384, depth=6, num_heads=6, mlp_dim=1536, dropout=0.2),
        dict(iters=5000, batch_size=64, lr=1e-3, warmup_iters=200, eval_interval=250, eval_iters=100, min_lr_ratio=0.1),
    ),
}


def preset_configs(preset: str, model_overrides: dict, train_overrides: dict) -> tuple[dict, LanguageConfig]:
    """The preset's model settings (without vocab_size, known once the corpus is read) and LanguageConfig."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    model_defaults, train_defaults = PRESETS[preset]
    model_values = {**model_defaults, **model_overrides}
    GPTConfig(**{"vocab_size": 1, **model_values})  # validate now, before reading the corpus
    return model_values, LanguageConfig(**{**train_defaults, **train_overrides})


@torch.no_grad()
def estimate_loss(
    model: GPT,
    data: TextData,
    config: LanguageConfig,
    generator: torch.Generator,
    device: torch.device,
    amp: str = "none",
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split, in eval mode."""
    model.eval()
    losses = {}
    for split in ("train", "val"):
        total = 0.0
        for _ in range(config.eval_iters):
            x, y = data.batch(split, config.batch_size, model.config.block_size, generator, device)
            with autocast(device, amp):
                total += model.loss(x, y).item()
        losses[split] = total / config.eval_iters
    model.train()
    return losses


def train_language_model(
    model_values: dict,
    config: LanguageConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains a GPT; returns the metrics written to ``metrics.json``.

    Launched by ``torchrun``, every process trains a slice of each global batch (DDP); rank 0 writes.
    """
    return run_on_cluster(config.device, _train, model_values, config, out, resume, preset, progress)


def _train(
    cluster: Cluster,
    device: torch.device,
    model_values: dict,
    config: LanguageConfig,
    out: str | Path | None,
    resume: str | Path | None,
    preset: str | None,
    progress: bool,
) -> dict[str, Any]:
    if resume is not None:
        run_dir = Path(resume)
        saved, settings = ckpt.read_resumable_run(run_dir, "gpt", config)
        config = LanguageConfig.from_dict(settings)
        tokenizer = CharTokenizer(io.read_json(run_dir / runs.VOCAB, "vocabulary"))
        data = load_text(config.text, block_size=saved["model"]["block_size"], tokenizer=tokenizer)
        model_config = GPTConfig.from_dict(saved["model"])
        preset = saved.get("preset")
    else:
        data = load_text(config.text, block_size=model_values["block_size"])
        model_config = GPTConfig(**{**model_values, "vocab_size": len(data.tokenizer)})
        run_dir = Path(cluster.share(str(new_run_dir(out, "gpt")) if cluster.is_main else None))
    cluster.check_batch(config.batch_size)
    # Decided once from facts (never timed) and saved resolved: resumes and every process train alike.
    config = dataclasses.replace(config, amp=cluster.share(resolve_amp(config.amp, device)))
    amp = config.amp
    torch.manual_seed(config.seed)
    model = GPT(model_config).to(device)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, betas=(0.9, 0.99))
    batches = torch.Generator().manual_seed(config.seed)
    history = History()
    step, best, train_seconds = 0, math.inf, 0.0
    if resume is not None:
        step, best, train_seconds, history = _restore(run_dir, model, optimizer, batches)
    elif cluster.is_main:
        io.write_json(
            run_dir / runs.CONFIG,
            {"kind": "gpt", "preset": preset, "model": model_config.to_dict(), "train": asdict(config)},
        )
        io.write_json(run_dir / runs.VOCAB, data.tokenizer.chars)
    trained = cluster.wrap(maybe_compile(model, config.compile, device), device)
    local = cluster.local_slice(config.batch_size)
    tokens_per_step = config.batch_size * model_config.block_size
    checkpoint_every = config.checkpoint_every or config.eval_interval
    bar = tqdm(
        total=config.iters,
        initial=step,
        desc="train gpt",
        disable=not (progress and cluster.is_main) or None,
        unit="step",
    )

    def learning_rate_at(elapsed: float) -> float:
        # With a time limit the schedule runs on whichever comes first: steps or seconds.
        position = max(step, int(config.iters * elapsed / config.time_limit)) if config.time_limit else step
        return learning_rate(
            position,
            base_lr=config.lr,
            total_steps=config.iters,
            warmup_steps=config.warmup_iters,
            schedule="cosine",
            min_ratio=config.min_lr_ratio,
        )

    def save() -> None:
        if cluster.is_main:
            _save_checkpoint(run_dir, model, optimizer, batches, step, best, train_seconds, history)

    def evaluate_now(lr: float) -> None:
        """Evaluates at ``step`` (batches seeded by the step, so a resumed run draws the same ones)."""
        nonlocal best
        generator = torch.Generator().manual_seed(config.seed + 1 + step)
        losses = estimate_loss(model, data, config, generator, device, amp)
        history.append(step=step, train_loss=losses["train"], val_loss=losses["val"], lr=lr, seconds=train_seconds)
        if cluster.is_main:
            tqdm.write(f"step {step}: train loss {losses['train']:.3f}, val loss {losses['val']:.3f}")
        if losses["val"] < best:
            best = losses["val"]
            if cluster.is_main:
                io.write_tensors(run_dir / runs.MODEL, model.state_dict(), {"step": str(step)})

    if step and (step % config.eval_interval == 0 or step == config.iters) and history.column("step")[-1:] != [step]:
        evaluate_now(learning_rate_at(train_seconds))  # interrupted during this evaluation: do it now
        save()
    model.train()
    started = time.perf_counter()
    try:
        out_of_time = False
        while step < config.iters and not out_of_time:
            lr = learning_rate_at(train_seconds + time.perf_counter() - started)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = data.batch("train", config.batch_size, model_config.block_size, batches, device)
            x, y = x[local], y[local]
            with autocast(device, amp):
                loss = F.cross_entropy(trained(x).flatten(0, 1).float(), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
            if not math.isfinite(loss_value := cluster.sum([loss.item()], device)[0]):
                raise ValueError(
                    f"the loss became {loss_value} at step {step + 1}; lower --lr (now {config.lr}); "
                    f"the last good checkpoint in {run_dir} is intact"
                )
            optimizer.step()
            step += 1
            bar.update()
            if config.time_limit:  # every rank must stop at the same step: rank 0's clock decides
                out_of_time = bool(cluster.share(train_seconds + time.perf_counter() - started >= config.time_limit))
            evaluate = step % config.eval_interval == 0 or step == config.iters or out_of_time
            if evaluate or step % checkpoint_every == 0:
                train_seconds += time.perf_counter() - started
                if evaluate:
                    evaluate_now(lr)
                save()
                started = time.perf_counter()
    except KeyboardInterrupt:
        train_seconds += time.perf_counter() - started
        save()
        raise
    finally:
        bar.close()
    cluster.barrier()
    model.load_state_dict(io.read_tensors(run_dir / runs.MODEL, "model weights"))
    best_row = min(history.rows, key=lambda row: row["val_loss"])
    metrics = {
        "val_loss": best_row["val_loss"],
        "train_loss": best_row["train_loss"],
        "best_step": best_row["step"],
        "iters": step,
        "train_seconds": train_seconds,
        "tokens_per_second": tokens_per_step * step / train_seconds if train_seconds else 0.0,
        **cluster.run_facts(model, device, amp),
    }
    if cluster.is_main:
        history.save(run_dir)
        io.write_json(run_dir / runs.METRICS, metrics)
        prompt = data.tokenizer.encode("\n")[None].to(device)
        sample = model.generate(
            prompt, 500, temperature=0.8, generator=torch.Generator(device).manual_seed(config.seed)
        )
        text = data.tokenizer.decode(sample[0, 1:].tolist())
        io.atomic_write(run_dir / runs.SAMPLE, lambda p: p.write_text(text))
        from labformer.plots import plot_curves, save_figure

        save_figure(plot_curves(history, [("loss", "train_loss", "val_loss")], x="step"), run_dir / "curves.png")
        print(
            f"val loss {metrics['val_loss']:.3f} (train {metrics['train_loss']:.3f}) after {step} steps, "
            f"{train_seconds:.0f}s of training, {metrics['tokens_per_second']:.0f} tokens/s -> {run_dir}"
        )
    return metrics


def _save_checkpoint(
    run_dir: Path,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    batches: torch.Generator,
    step: int,
    best: float,
    train_seconds: float,
    history: History,
) -> None:
    meta = {"step": step, "best_val_loss": best, "train_seconds": train_seconds, "history": history.rows}
    ckpt.save_training_state(run_dir / runs.CHECKPOINT, model, optimizer, meta, {"rng.batches": batches.get_state()})


def _restore(
    run_dir: Path, model: GPT, optimizer: torch.optim.Optimizer, batches: torch.Generator
) -> tuple[int, float, float, History]:
    meta, tensors = ckpt.load_training_state(run_dir / runs.CHECKPOINT, model, optimizer)
    batches.set_state(tensors["rng.batches"])
    return meta["step"], meta["best_val_loss"], meta["train_seconds"], History(meta["history"])
