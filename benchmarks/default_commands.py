"""The default training commands, `labformer train`, `labformer train gpt` and `labformer train seq2seq`, run
as a user runs them, natively and under the AVX2 profile of ``cpu_profiles.py``; and the README's results
table, written from the files.

    python benchmarks/default_commands.py [--commands vit,gpt,seq2seq] [--profiles native,avx2]   # alone
    python benchmarks/default_commands.py --readme     # only rewrite the README's table from the JSON files

Each run is a fresh process in a temporary folder (2 threads unless ``--threads``); its ``metrics.json`` is
recorded with the CPU, the profile, the command, torch's version and the date in
``benchmarks/results/default_commands/<cpu>.json`` (a run of a command and profile replaces the earlier
one). The README's table takes the default commands' rows from there (each time as the range over the
CPUs and profiles recorded) and the longer presets' rows from their own result files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cpu_profiles import PROFILES
from report import short_cpu, slug

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORDS = RESULTS / "default_commands"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
COMMANDS = {
    "vit": ["train", "--no-progress"],
    "gpt": ["train", "gpt", "--no-progress"],
    "seq2seq": ["train", "seq2seq", "--no-progress"],
}


def run(command: str, profile: str, threads: int) -> dict[str, Any]:
    """One default command in a fresh process; its metrics with what it ran on."""
    from labformer.training.runtime import cpu_info

    env = {**os.environ, **PROFILES[profile], "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        argv = [sys.executable, "-m", "labformer", *COMMANDS[command], "--out", str(out)]
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((out / "metrics.json").read_text())
    import torch

    cpu = cpu_info()
    return {
        "command": "labformer " + " ".join(COMMANDS[command][:-1]),
        "profile": profile,
        "env": PROFILES[profile],
        "cpu": cpu.model,
        "cpu_features": cpu.features,
        "threads": threads,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "metrics": metrics,
    }


def record(result: dict[str, Any]) -> Path:
    path = RECORDS / f"{slug(result['cpu'])}-{slug(result['cpu_features'])}.json"
    kept = json.loads(path.read_text()) if path.exists() else []
    kept = [r for r in kept if (r["command"], r["profile"]) != (result["command"], result["profile"])]
    RECORDS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*kept, result], indent=1) + "\n")
    return path


def table() -> str:
    """The README's results table, from the recorded files."""
    records = [r for path in sorted(RECORDS.glob("*.json")) for r in json.loads(path.read_text())]
    rows = []
    defaults = (("labformer train", "fast", "ViT, MNIST"), ("labformer train gpt", "cpu", "GPT, Tiny Shakespeare"),
                ("labformer train seq2seq", "dates", "encoder-decoder, dates"))  # fmt: skip
    for command, preset, label in defaults:
        runs = [r for r in records if r["command"] == command]
        if not runs:
            continue
        seconds = [r["metrics"]["train_seconds"] for r in runs]
        if command == "labformer train":
            reached = " / ".join(sorted({f"{r['metrics']['test_accuracy'] * 100:.2f} %" for r in runs}))
            reached += " test accuracy"
        elif command == "labformer train gpt":
            reached = " / ".join(sorted({f"{r['metrics']['val_loss_full']:.3f}" for r in runs}))
            reached += " nats/character (whole validation split)"
        else:
            reached = " / ".join(sorted({f"{r['metrics']['test_exact'] * 100:.2f} %" for r in runs}))
            reached += " exact match (held-out dates)"
        machines = "; ".join(sorted({short_cpu(r["cpu"], r["cpu_features"], r["profile"] == "avx2") for r in runs}))
        rows.append((f"`{preset}` {label} (`{command}`)", reached, f"{min(seconds):.0f}–{max(seconds):.0f} s",
                     machines, max(r["date"] for r in runs)))  # fmt: skip
    recorded = {entry["path"]: entry for entry in json.loads((RESULTS / "runs.json").read_text())["runs"]}
    best = json.loads((RESULTS / "best-cpu" / "metrics.json").read_text())
    recipes = sorted((RESULTS / "cifar_recipes").glob("*avx2-profile.json"))
    gpu = next(r for r in json.loads((RESULTS / "h200-lab-cifar.json").read_text()) if r["preset"] == "lab-cifar")
    for label, metrics, time, path in (
        ("`best` ViT, MNIST", best, f"{best['train_seconds'] / 60:.0f} min", "best-cpu"),
        ("the lab's CIFAR-10 ViT without RandAugment", gpu["metrics"], f"{gpu['metrics']['train_seconds']:.0f} s",
         "h200-lab-cifar.json"),
    ):  # fmt: skip
        entry = recorded[path]
        rows.append((label, f"{metrics['test_accuracy'] * 100:.2f} %", time, entry["short"], entry["date"]))
    for path in recipes:  # the `cifar` preset, over seeds, from benchmarks/cifar_recipes.py
        result = json.loads(path.read_text())
        runs = [r for r in result["runs"] if r["variant"] == "cifar"]
        if runs:
            accuracies = " / ".join(f"{r['test_accuracy'] * 100:.2f} %" for r in runs)
            minutes = [r["train_seconds"] / 60 for r in runs]
            where = short_cpu(result["cpu"], result["cpu_features"], bool(result["profile"]))
            rows.insert(-1, ("`cifar` hybrid ViT (a convnet tokenizer), CIFAR-10", f"{accuracies} test accuracy",
                             f"{min(minutes):.1f}–{max(minutes):.1f} min", where, result["date"]))  # fmt: skip
    lines = ["| preset | what it reaches | training time | measured on | date |", "|---|---|---|---|---|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def write_readme() -> None:
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}")
    print("README.md: results table rewritten")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"of {', '.join(COMMANDS)}")
    parser.add_argument("--profiles", default="native,avx2", help=f"of {', '.join(PROFILES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--readme", action="store_true", help="only rewrite the README's table")
    args = parser.parse_args()
    for flag, given, known in (("--commands", args.commands, COMMANDS), ("--profiles", args.profiles, PROFILES)):
        unknown = sorted(set(given.split(",")) - set(known))
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if not args.readme:
        for command in args.commands.split(","):
            for profile in args.profiles.split(","):
                result = run(command, profile, args.threads)
                seconds = result["metrics"]["train_seconds"]
                print(f"{result['command']} [{profile}]: {seconds:.0f} s -> {record(result)}", flush=True)
    write_readme()


if __name__ == "__main__":
    main()
