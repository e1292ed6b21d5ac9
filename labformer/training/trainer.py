"""The one training loop: a :class:`Task` supplies batches, a loss and an evaluation; the Trainer owns
the rest, once — schedule, precision, torch.compile, the DDP slice and wrap, clipping, the finite
check, checkpoints (atomic, one file), Ctrl-C, best-so-far weights, exact resume and metrics.

A step: set the learning rate, draw global batch ``step`` (the task's seeded stream), keep this
process's slice, forward + loss under autocast, backward, clip, sum the step's numbers over processes,
check them, optimiser step. Every ``eval_every`` steps (and at the end) the task evaluates; the row goes
to the history, the best weights to ``model.safetensors`` and the state to ``checkpoint.safetensors``.
A run resumed from any checkpoint takes exactly the steps the uninterrupted run would have taken.

Callbacks (progress bar, figures, a test's Ctrl-C) hook in without the loop knowing about them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from labformer import io, runs
from labformer.encoder import feed_forward_precision
from labformer.training.callbacks import Callback, EvaluationLog, ProgressBar
from labformer.training.checkpoint import load_training_state, read_resumable_run, save_training_state
from labformer.training.distributed import Cluster
from labformer.training.history import History
from labformer.training.optim import Schedule
from labformer.training.progress import RUNNING, Progress
from labformer.training.runtime import (
    autocast,
    maybe_compile,
    new_run_dir,
    removed_if_empty_on_failure,
    resolve_amp,
    resolve_muon_precision,
)  # fmt: skip
from labformer.training.task import Task

__all__ = ["Trainer", "open_run"]


def open_run(
    cluster: Cluster,
    device: torch.device,
    kind: str,
    config: Any,
    *,
    out: str | Path | None,
    resume: str | Path | None,
    name: str,
) -> tuple[Path, dict[str, Any] | None, Any]:
    """The run directory (new, or ``resume``), the resumed run's saved config.json (None when new) and
    the training config to use: the saved one when resuming, with the precisions (autocast and, for
    configs that have it, Muon's) resolved once and shared by every process."""
    if resume is not None:
        run_dir = Path(resume)
        saved, settings = read_resumable_run(run_dir, kind, config)
        config = type(config).from_dict(settings)
    else:
        saved = None
        run_dir = Path(cluster.share(str(new_run_dir(out, name)) if cluster.is_main else None))
    with removed_if_empty_on_failure(run_dir):
        cluster.check_batch(config.batch_size)
        # Decided once from facts (never timed) and saved resolved: resumes and every process train alike.
        resolved = {"amp": resolve_amp(config.amp, device)}
        if hasattr(config, "muon_precision"):
            resolved["muon_precision"] = resolve_muon_precision(config.muon_precision, device)
        return run_dir, saved, dataclasses.replace(config, **cluster.share(resolved))


class Trainer:
    """Trains ``task.model`` with ``optimizer``; writes into ``run_dir`` (rank 0).

    Args:
        task: batches, loss and evaluation of one kind of model.
        optimizer: over ``task.model``'s parameters; its learning rate is set each step from ``schedule``.
        schedule: the learning rate per step.
        run_dir: where checkpoints, weights, history and metrics go.
        device: where the model and batches live.
        amp: resolved precision: "none", "bf16" (autocast) or "bf16-ff" (bf16 in the feed-forward blocks).
        compile: ``torch.compile`` the model for the steps.
        grad_clip: max global gradient norm; 0 = off.
        checkpoint_every: also checkpoint every N steps (0: at evaluations only).
        time_limit: stop after this many seconds of training, the schedule following the clock.
        cluster: the data-parallel processes (one when not launched by torchrun).
        callbacks: hooks, e.g. :class:`ProgressBar`.
    """

    def __init__(
        self,
        task: Task,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        *,
        run_dir: Path,
        device: torch.device,
        amp: str = "none",
        compile: bool = False,
        grad_clip: float = 0.0,
        checkpoint_every: int = 0,
        time_limit: float | None = None,
        cluster: Cluster | None = None,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
    ) -> None:
        self.task, self.optimizer, self.schedule = task, optimizer, schedule
        self.run_dir, self.device, self.amp, self.compile = Path(run_dir), device, amp, compile
        self.grad_clip, self.checkpoint_every, self.time_limit = grad_clip, checkpoint_every, time_limit
        self.cluster = cluster or Cluster()
        if amp == "bf16-ff":
            feed_forward_precision(task.model, torch.bfloat16)
        self.callbacks = list(callbacks)
        self.progress = Progress(running=dict.fromkeys(RUNNING + task.sums, 0.0))
        self.history = History()
        self.stopped = False
        self._clock = 0.0
        self._mid_step = self._interrupted = self._ctrl_c = False

    @classmethod
    def for_config(
        cls,
        task: Task,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        config: Any,
        *,
        run_dir: Path,
        device: torch.device,
        cluster: Cluster,
        progress: bool = True,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
    ) -> Trainer:
        """A Trainer with a training config's run-time settings (amp, compile, grad_clip, checkpoint_every
        and, where it has one, time_limit), a line per evaluation on rank 0 and, when ``progress``, a
        progress bar."""
        bar = [ProgressBar()] if progress else []
        bar = [*bar, EvaluationLog()] if cluster.is_main else []
        return cls(
            task, optimizer, schedule, run_dir=run_dir, device=device, amp=config.amp, compile=config.compile,
            grad_clip=config.grad_clip, checkpoint_every=config.checkpoint_every,
            time_limit=getattr(config, "time_limit", None), cluster=cluster, callbacks=[*bar, *callbacks],
        )  # fmt: skip

    def restore(self) -> None:
        """Continues from ``run_dir``'s checkpoint: weights, optimiser, RNGs, data stream, progress."""
        meta, tensors = load_training_state(self.run_dir / runs.CHECKPOINT, self.task.model, self.optimizer)
        self.progress = progress = Progress.from_meta(meta, self.task.eval_every, self.schedule)
        progress.running = {name: progress.running.get(name, 0.0) for name in RUNNING + self.task.sums}
        self.history = History(meta["history"])
        self.task.restore_stream(self.progress.step, tensors)

    def stop(self) -> None:
        """Ends training after the current step (e.g. from a callback)."""
        self.stopped = True

    def fit(self) -> Progress:
        """Trains until ``task.total_steps`` (or the time limit, or :meth:`stop`); returns the progress.

        A Ctrl-C is acted on once the current step is done (every process at the same step): the
        checkpoint then holds a whole step, so resuming gives exactly the uninterrupted run. A second
        Ctrl-C stops at once, keeping the last checkpoint.
        """
        task, progress = self.task, self.progress
        trained = self.cluster.wrap(maybe_compile(task.model, self.compile, self.device), self.device)
        local = self.cluster.local_slice(task.batch_size)
        task.model.train()
        try:
            with self._ctrl_c_after_the_step():
                if progress.step > progress.evaluated_at and self._evaluation_due(progress.step):
                    self._evaluate()  # the run was interrupted during this evaluation: do it now
                    self._save()
                self._clock = time.perf_counter()
                while progress.step < task.total_steps and not self.stopped:
                    self._step(trained, local)
                    out_of_time = self._out_of_time()
                    evaluate = self._evaluation_due(progress.step) or out_of_time
                    if evaluate or (self.checkpoint_every and progress.step % self.checkpoint_every == 0):
                        self._fold_clock()
                        if evaluate:
                            self._evaluate()
                        self._save()
                        self._clock = time.perf_counter()
                    self.stopped |= out_of_time
                    if self._interrupted:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if not self._mid_step:
                self._fold_clock()
                self._save()
            raise
        finally:
            for callback in self.callbacks:
                callback.on_close(self)
        return progress

    @contextlib.contextmanager
    def _ctrl_c_after_the_step(self) -> Iterator[None]:
        """While training, a first SIGINT only raises a flag (shared over processes with the step's sums)."""
        self._interrupted = self._ctrl_c = False
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
            signal.SIG_IGN,
            None,
        ):
            yield
            return

        def note(signum: int, frame: Any) -> None:
            if self._ctrl_c:
                raise KeyboardInterrupt
            self._ctrl_c = True
            if self.cluster.is_main:
                tqdm.write("Ctrl-C: stopping after this step (press it again to stop at once)")

        previous = signal.signal(signal.SIGINT, note)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def finish(self) -> dict[str, Any]:
        """Loads the best weights, asks the task for the metrics and (rank 0) writes them with the
        history, prints the task's summary and calls ``on_end``; returns the metrics."""
        self.cluster.barrier()
        self.task.model.load_state_dict(io.read_tensors(self.run_dir / runs.MODEL, "model weights"))
        metrics = {**self.task.finish(self), **self.cluster.run_facts(self.task.model, self.device, self.amp)}
        if self.cluster.is_main:
            self.history.save(self.run_dir)
            io.write_json(self.run_dir / runs.METRICS, metrics)
            print(f"{self.task.summary(metrics)} -> {self.run_dir}")
            for callback in self.callbacks:
                callback.on_end(self, metrics)
        return metrics

    def _step(self, trained: nn.Module, local: slice) -> None:
        progress, task = self.progress, self.task
        self._mid_step = True
        lr = self._learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = task.batch(progress.step)
        inputs, targets = inputs[local], targets[local]
        with autocast(self.device, self.amp):
            loss, sums = task.loss(trained, inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(task.model.parameters(), self.grad_clip, foreach=True)
        count = targets.shape[0]
        values = self.cluster.sum([loss.item() * count, count, *(s.item() for s in sums), self._ctrl_c], self.device)
        values, self._interrupted = values[:-1], values[-1] > 0
        if not math.isfinite(values[0]):
            raise ValueError(
                f"the loss became {values[0] / values[1]} at {task.where(progress.step)}; lower --lr (now "
                f"{self.schedule.lr}); the last good checkpoint in {self.run_dir} is intact"
            )
        self.optimizer.step()
        for name, value in zip(progress.running, values):
            progress.running[name] += value
        progress.step += 1
        progress.lr = lr
        self._mid_step = False
        for callback in self.callbacks:
            callback.on_step(self)

    def _learning_rate(self) -> float:
        step = self.progress.step
        if self.time_limit:  # the schedule runs on whichever comes first: steps or seconds
            elapsed = self.progress.train_seconds + time.perf_counter() - self._clock
            step = max(step, int(self.task.total_steps * elapsed / self.time_limit))
        return self.schedule.at(step)

    def _out_of_time(self) -> bool:
        if not self.time_limit:
            return False
        elapsed = self.progress.train_seconds + time.perf_counter() - self._clock
        return bool(self.cluster.share(elapsed >= self.time_limit))  # every rank stops at rank 0's step

    def _evaluation_due(self, step: int) -> bool:
        return step % self.task.eval_every == 0 or step == self.task.total_steps

    def _fold_clock(self) -> None:
        now = time.perf_counter()
        self.progress.train_seconds += now - self._clock
        self.progress.interval_seconds += now - self._clock
        self._clock = now

    def _evaluate(self) -> None:
        progress, task = self.progress, self.task
        row = task.evaluate(progress)
        for callback in self.callbacks:
            callback.on_evaluation(self, row)
        self.history.append(**row)
        progress.evaluated_at = progress.step
        value = row[task.monitor]
        if progress.best is None or (value > progress.best if task.maximize else value < progress.best):
            progress.best = value
            if self.cluster.is_main:
                io.write_tensors(self.run_dir / runs.MODEL, task.model.state_dict(), {"step": str(progress.step)})
        progress.running = dict.fromkeys(progress.running, 0.0)
        progress.interval_seconds = 0.0

    def _save(self) -> None:
        if self.cluster.is_main:
            meta = {"progress": asdict(self.progress), "history": self.history.rows}
            extra = self.task.stream_state(self.progress.step)
            save_training_state(self.run_dir / runs.CHECKPOINT, self.task.model, self.optimizer, meta, extra)
