"""bf16 autocast against float32 on this machine: whole training steps, and where matrix products cross over.

Run: ``python benchmarks/amp.py [--seconds 8]``. Prints (1) the CPU and its features, (2) a float32 vs
bf16 matrix-product sweep over widths, (3) training throughput of the ViT ``fast`` model and the GPT
``cpu`` model in float32 and under bf16 autocast (same model, same batch, timed in the same run), and
(4) mixed policies — bf16 only in the feed-forward blocks, or also in the attention projections, the
rest (norms, softmax, residuals) in float32 — as speed-ups over float32 in the same run, and (5) what
``--amp auto`` chooses here. The end-to-end rows are the evidence behind ``--amp auto``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable, Iterator

import torch
from report import Report
from timing import median_seconds

from labformer.attention import MultiHeadAttention
from labformer.doctor import default_gpt_step, fast_vit_step, time_steps
from labformer.encoder import EncoderLayer
from labformer.training.runtime import resolve_amp


def matmul_sweep() -> list[list[str]]:
    rows = []
    for dim in (64, 128, 256, 512, 1024):
        x, w = torch.randn(4096, dim), torch.randn(dim, dim)

        def run(bf16: bool, x=x, w=w) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                x @ w

        fp32 = median_seconds(lambda: run(False), repeats=5)
        bf16 = median_seconds(lambda: run(True), repeats=3, warmup=1)
        flops = 2 * 4096 * dim * dim
        rows.append([str(dim), f"{flops / fp32 / 1e9:.1f}", f"{flops / bf16 / 1e9:.1f}", f"{fp32 / bf16:.2f}x"])
    return rows


def gpt_cpu_step() -> Callable[[str], float]:
    """The ``cpu`` preset's GPT (d = 128, 4 layers, block 128, rotary positions, ReLU²) on one random batch of
    32 windows (AdamW, as every step of this file)."""
    return default_gpt_step(torch.device("cpu"), optimizer="adamw")


@contextlib.contextmanager
def bf16_only_in(*methods: tuple[type, str]) -> Iterator[None]:
    """Runs the given methods (class, name) under bf16 autocast, everything else in float32 (their outputs
    are cast back to float32)."""
    originals = [(cls, name, getattr(cls, name)) for cls, name in methods]

    def in_bf16(original):
        def method(self, *args, **kwargs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = original(self, *args, **kwargs)
            return tuple(t.float() for t in out) if isinstance(out, tuple) else out.float()

        return method

    for cls, name, original in originals:
        setattr(cls, name, in_bf16(original))
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


# Mixed policies: which parts of each layer run in bf16 (the rest, norms and softmax included, in float32).
POLICIES: dict[str, tuple[tuple[type, str], ...]] = {
    "feed-forward only": ((EncoderLayer, "_ff_block"),),
    "feed-forward + QKV projection": (
        (EncoderLayer, "_ff_block"),
        (MultiHeadAttention, "_project"),
    ),
}


def policy_rows(seconds: float, rounds: int = 3) -> list[list[str]]:
    """Whole training steps under each policy against float32 and full bf16 autocast: ``rounds``
    interleaved rounds (float32, all bf16, each policy, ...), medians of the seconds per step."""
    cpu = torch.device("cpu")
    rows = []
    for name, step, items in (
        ("ViT fast (dim 64, batch 128)", fast_vit_step(cpu), 128),
        ("GPT cpu (dim 128, batch 32 x 128)", gpt_cpu_step(), 32 * 128),
    ):
        variants: dict[str, Callable[[], float]] = {
            "float32": lambda step=step: time_steps(step, "none", seconds / rounds).seconds_per_step,
            "all bf16": lambda step=step: time_steps(step, "bf16", seconds / rounds).seconds_per_step,
        }
        for policy, methods in POLICIES.items():

            def timed(step=step, methods=methods) -> float:
                with bf16_only_in(*methods):
                    return time_steps(step, "none", seconds / rounds).seconds_per_step

            variants[policy] = timed
        times: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(rounds):
            for variant, measure in variants.items():
                times[variant].append(measure())
        fp32 = statistics.median(times["float32"])
        speedups = [f"{fp32 / statistics.median(times[v]):.2f}x" for v in variants if v != "float32"]
        rows.append([name, f"{items / fp32:,.0f}", *speedups])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per model and precision")
    args = parser.parse_args()
    report = Report("amp")
    headers = ["width", "float32 GFLOP/s", "bf16 GFLOP/s", "bf16 speed-up"]
    report.table("Matrix products, float32 against bf16.", headers, matmul_sweep())
    cpu = torch.device("cpu")
    rows = []
    for name, step, items in (
        ("ViT fast (dim 64, batch 128)", fast_vit_step(cpu), 128),
        ("GPT cpu (dim 128, batch 32 x 128)", gpt_cpu_step(), 32 * 128),
    ):
        fp32, bf16 = (time_steps(step, amp, args.seconds) for amp in ("none", "bf16"))
        rows.append(
            [
                name,
                f"{items / fp32.seconds_per_step:,.0f}",
                f"{items / bf16.seconds_per_step:,.0f}",
                f"{fp32.seconds_per_step / bf16.seconds_per_step:.2f}x",
            ]
        )
    report.table("Whole training steps under bf16 autocast.",
                 ["model (training step)", "float32 items/s", "bf16 items/s", "bf16 speed-up"], rows)  # fmt: skip
    report.table(
        "Mixed policies: bf16 only in some blocks, the rest in float32 (speed-ups over float32, same run).",
        ["model (training step)", "float32 items/s", "all bf16", *(f"bf16 {name}" for name in POLICIES)],
        policy_rows(args.seconds),
    )
    report.note(f"`--amp auto` on this CPU: {resolve_amp('auto', cpu)} (float32 on every CPU; bf16 on CUDA GPUs "
                "with bf16).")  # fmt: skip
    report.save()


if __name__ == "__main__":
    main()
