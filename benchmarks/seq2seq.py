"""The encoder–decoder: its default commands trained as a user runs them, and decoding speed with and without
the caches.

Run: ``python benchmarks/seq2seq.py [--train dates,reverse] [RUN_DIR]`` — alone on the machine.

- Training: ``labformer train seq2seq`` (the `dates` preset) and ``labformer train seq2seq --task reverse``,
  each in a fresh process with 2 threads; exact match and character accuracy on the held-out test split,
  training time, accuracy by language and by format, and the commonest mistakes (the run's ``mistakes.md``).
  Targets: dates ≥ 99.5 % exact within 5 minutes of training, reverse ≥ 99.9 % within 2 minutes.
- Decoding: the held-out test inputs of a dates run (default: the one trained above, else the shipped
  model) written greedily and with a beam of 4, one input at a time and in one batch, with the caches
  (each layer's self-attention keys and values kept step by step, the cross-attention keys and values of
  the memory computed once per input) and without (the whole decoder rerun on the prefix at every step);
  characters written per second, medians of interleaved rounds, and whether both wrote the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import Report

TARGETS = {"dates": (0.995, 300.0), "reverse": (0.999, 120.0)}  # exact match, training seconds


def train(task: str, out: Path, threads: int) -> dict:
    """``labformer train seq2seq --task TASK`` in a fresh process; its metrics."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-m", "labformer", "train", "seq2seq", "--task", task, "--no-progress", "--out", str(out)]
    print("$", " ".join(argv[2:]), flush=True)
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def decoding_rows(run_dir: Path, count: int, rounds: int) -> list[list[str]]:
    from labformer.training.translation import open_translation_run

    model, data = open_translation_run(run_dir, splits=True)
    sources = [s for s, _, _ in data.splits["test"][:count]]
    rows = []
    for beam in (1, 4):
        for batched in (False, True):
            batches = [data.encode(sources)[0]] if batched else [data.encode([s])[0] for s in sources]
            speeds: dict[bool, list[float]] = {True: [], False: []}
            written: dict[bool, list] = {}
            for _ in range(rounds):
                for use_cache in (True, False):
                    started, characters, tokens = time.perf_counter(), 0, []
                    for batch in batches:
                        decoded = model.translate(batch, beam=beam, use_cache=use_cache)
                        characters += sum(len(t) + 1 for t in decoded.tokens)  # the end token is written too
                        tokens += decoded.tokens
                    speeds[use_cache].append(characters / (time.perf_counter() - started))
                    written[use_cache] = tokens
            cached, uncached = (statistics.median(speeds[c]) for c in (True, False))
            inputs = f"{len(sources)} in one batch" if batched else "one at a time"
            rows.append([
                "greedy" if beam == 1 else f"beam {beam}", inputs,
                f"{cached:,.0f}", f"{uncached:,.0f}", f"{cached / uncached:.2f}×",
                "yes" if written[True] == written[False] else "NO",
            ])  # fmt: skip
            print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a dates run to decode with (default: trained here, else shipped)")
    parser.add_argument("--train", default="dates,reverse", help="tasks to train first, of dates, reverse ('' = none)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the training runs (default 2)")
    parser.add_argument("--count", type=int, default=200, help="test inputs decoded (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of decoding (default 3)")
    args = parser.parse_args()
    tasks = [t for t in args.train.split(",") if t]
    unknown = sorted(set(tasks) - set(TARGETS))
    if unknown:
        parser.error(f"--train: unknown {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    report = Report("seq2seq")
    with tempfile.TemporaryDirectory() as work:
        runs: dict[str, Path] = {}
        rows, language_rows, format_rows = [], [], []
        for task in tasks:
            runs[task] = Path(work) / task
            m = train(task, runs[task], args.threads)
            exact_target, seconds_target = TARGETS[task]
            rows.append([f"`labformer train seq2seq --task {task}`", f"{m['test_exact']:.2%}",
                         f"{m['test_characters']:.2%}", f"{m['test_count']:,}", f"{m['train_seconds']:.0f} s",
                         f"{m['iters']:,}"])  # fmt: skip
            met = m["test_exact"] >= exact_target and m["train_seconds"] <= seconds_target
            gaps = [f"by {(exact_target - m['test_exact']) * 100:.2f} points"] * (m["test_exact"] < exact_target)
            gaps += [f"by {m['train_seconds'] - seconds_target:.0f} s"] * (m["train_seconds"] > seconds_target)
            report.target(f"`{task}`: ≥ {exact_target:.1%} exact match on held-out pairs within {seconds_target:.0f} s",
                          f"{m['test_exact']:.2%} in {m['train_seconds']:.0f} s", met, ", ".join(gaps))  # fmt: skip
            if task == "dates":
                language_rows = [[k, f"{v['exact']:.2%}", f"{v['characters']:.2%}", f"{v['count']:,.0f}"]
                                 for k, v in m["test_by_language"].items()]  # fmt: skip
                from labformer.data.dates import TEST_FORMATS

                hardest = sorted(m["test_by_format"].items(), key=lambda kv: (kv[1]["exact"], kv[0]))
                format_rows = [[k + (" (held out)" if k.split(": ", 1)[1] in TEST_FORMATS else ""),
                                f"{v['exact']:.2%}", f"{v['characters']:.2%}", f"{v['count']:,.0f}"]
                               for k, v in hardest]  # fmt: skip
                mistakes = (runs[task] / "mistakes.md").read_text(encoding="utf-8")
        if rows:
            headers = ["command", "exact match", "characters", "test pairs", "training time", "steps"]
            report.table("Trained as a user runs them, test split held out by construction.", headers, rows)
        if language_rows:
            report.table("`dates`: by language.", ["language", "exact match", "characters", "pairs"], language_rows)
            report.table("`dates`: by format, the hardest first; \"held out\": a format only the test split has.",
                         ["format", "exact match", "characters", "pairs"], format_rows)  # fmt: skip
            lines = [line for line in mistakes.splitlines() if line.startswith("|")]
            split = next(i for i in range(1, len(lines)) if lines[i].startswith("| source"))
            kinds = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:split]]
            examples = [[c.strip() for c in line.strip("|").split("|")] for line in lines[split + 2 :]][:10]
            report.table("`dates`: the commonest mistakes (which characters of the ISO date differ).",
                         ["format", "what differs", "count"], kinds or [["none", "", "0"]])  # fmt: skip
            if examples:
                report.table("`dates`: examples of mistakes.", ["source", "expected", "written", "format"], examples)
        if "dates" in runs:
            run_dir = runs["dates"]
        else:
            from labformer.serve.models import PRETRAINED

            run_dir = Path(args.run_dir) if args.run_dir else PRETRAINED / "dates"
        torch.set_num_threads(args.threads)
        report.table(
            f"Decoding {args.count} held-out dates: characters written per second (median of {args.rounds} "
            "interleaved rounds).",
            ["search", "inputs", "cached", "uncached", "cached / uncached", "same output"],
            decoding_rows(Path(args.run_dir) if args.run_dir else run_dir, args.count, args.rounds),
        )
    report.save()


if __name__ == "__main__":
    main()
