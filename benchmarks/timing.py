"""Shared helpers for the benchmarks: median wall time of repeated calls, and a table printer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_seconds(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2, min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    Keeps repeating (beyond ``repeats``) until ``min_seconds`` of timed calls have run.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: Sequence[Callable[[], object]], *, repeats: int = 7, warmup: int = 2) -> list[float]:
    """Median times of several functions timed in turn (A B A B ...), so drift hits all equally."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Prints and returns a Markdown table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def machine_line() -> str:
    """The machine a table was measured on: CPU model and features, torch and its threads."""
    import torch

    from labformer.training.runtime import cpu_info

    return f"CPU: {cpu_info()}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def train_steps_per_second(trainer, skip: int = 3) -> float:
    """Runs ``trainer.fit()`` and returns its optimiser steps per second, not counting the first ``skip``
    steps (warm-up) nor the evaluation at the end."""
    from labformer.training.callbacks import Callback

    class Clock(Callback):
        times: list[float] = []

        def on_step(self, trainer) -> None:
            self.times.append(time.perf_counter())

    clock = Clock()
    clock.times = []
    trainer.callbacks.append(clock)
    trainer.fit()
    trainer.callbacks.remove(clock)
    times = clock.times[skip:]
    return (len(times) - 1) / (times[-1] - times[0])
