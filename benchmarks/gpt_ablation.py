"""Leave-one-out ablation of the GPT's `cpu` preset over several seeds.

Each variant is the preset with one of its changes undone, or one more added (QK-norm, or the two the
ablation took out), trained by `labformer train gpt` for the preset's steps with each seed. The preset
counts steps, so a run gives the same model however fast the machine is (float sums in another order
with another number of threads): runs may go side by side (``--jobs``, ``--threads`` each), and their
wall times say nothing. Training time alone, with 2 threads, is in the seed table of docs/performance.md.

Prints, per variant, the validation loss on the whole split (`labformer evaluate`'s measure, printed by
the run) and the run's own random-batch measure: mean and spread (min–max) over the seeds.

    python benchmarks/gpt_ablation.py --seeds 0,1,2 --jobs 2 --variants preset,learned,gelu,adamw,zero-init

``--json FILE`` also writes every run's metrics with the machine, the CPU profile switches in force
(``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``), the command and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from timing import machine_line, print_table

# Each variant: the flags that turn the preset into it.
VARIANTS: dict[str, list[str]] = {
    "preset": [],
    "learned": ["--position", "learned"],  # the lab's learned positions instead of rotary ones
    "gelu": ["--activation", "gelu"],  # the lab's GELU instead of ReLU²
    "adamw": ["--optimizer", "adamw", "--weight-decay", "0.1"],  # AdamW everywhere (its earlier decay)
    "zero-init": ["--zero-init"],  # output projections start at zero instead of N(0, 0.02)
    "untied": ["--no-tie-weights"],  # the head gets its own matrix instead of the token embedding's
    "qk-norm": ["--qk-norm"],  # RMS-normalised queries and keys
    "zero-init-untied": ["--zero-init", "--no-tie-weights"],  # both: the preset before the ablation
}


def run(variant: str, seed: int, root: Path, extra: list[str], threads: int) -> dict:
    """Trains one variant with one seed; returns its metrics.json (reused if already there)."""
    out = root / f"{variant}-seed{seed}"
    metrics = out / "metrics.json"
    if not metrics.exists():
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "labformer", "train", "gpt", "--seed", str(seed), "--out", str(out)]
        command += ["--no-progress", *VARIANTS[variant], *extra]
        with open(root / f"{variant}-seed{seed}.log", "w") as log:
            subprocess.run(command, env=env, stdout=log, stderr=log, check=True)
    return json.loads(metrics.read_text())


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads of each run (default 1)")
    parser.add_argument("--root", default="runs/gpt-ablation", help="where the runs go; finished runs are reused")
    parser.add_argument("--flags", default="", help="more flags for every run, e.g. '--iters 20' to try it out")
    parser.add_argument("--json", help="also write the runs' metrics, the machine and the command to this file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(variant, seed) for variant in variants for seed in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda job: run(*job, root, args.flags.split(), args.threads), jobs)))
    rows = []
    for variant in variants:
        runs = [results[variant, seed] for seed in seeds]
        rows.append(
            [
                variant + (" " + " ".join(VARIANTS[variant]) if VARIANTS[variant] else ""),
                summary([r["val_loss_full"] for r in runs]),
                " / ".join(f"{r['val_loss_full']:.3f}" for r in runs),
                summary([r["val_loss"] for r in runs]),
                f"{statistics.mean(r['iters'] for r in runs):,.0f}",
            ]
        )
    print(f"\nGPT preset cpu, leave-one-out; seeds {seeds}; {args.jobs} run(s) at a time, {args.threads} thread(s)")
    machine = machine_line().rsplit(", ", 1)[0]  # the runs' threads are in the line above, not this process's
    print(f"{machine}; {time.perf_counter() - started:.0f} s in all\n")
    print_table(["variant", "whole-split val loss, mean (min–max)", "by seed", "run's val loss", "steps"], rows)
    if args.json:
        profile = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
        record = {
            "command": "python benchmarks/gpt_ablation.py " + " ".join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "machine": machine,
            "profile": {name: os.environ[name] for name in profile if name in os.environ},
            "jobs": args.jobs,
            "threads": args.threads,
            "runs": [{"variant": v, "seed": s, "metrics": results[v, s]} for v in variants for s in seeds],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
