"""A class of submissions checked together: how long `labformer check --class` takes for 60 students.

Run: ``python benchmarks/exercises_class.py [--students 60] [--jobs 2]`` — alone on the machine. It writes
the submissions (a third with the reference answers, a third each holding one catalogued mistake per
piece, a third as handed out), checks them all as the teacher would, and records the wall time against
the target (60 submissions in at most 5 minutes on 2 cores) in ``benchmarks/results/exercises_class/``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from report import Report

from labformer.exercises.catalogue import EXERCISES, PIECES, mistaken_source, piece_sources, without_markers
from labformer.exercises.classroom import check_class
from labformer.exercises.messages import Messages
from labformer.exercises.notebook import as_python, notebook

HEADER = "import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
TARGET_SECONDS = 300.0


def write_class(folder: Path, students: int) -> None:
    mistakes = [(e, m) for e in EXERCISES for m in e.mistakes]
    handed_out = as_python(notebook(Messages("en"), solutions=False))
    for index in range(students):
        kind = index % 3
        if kind == 2:
            (folder / f"student{index:02d}.py").write_text(handed_out)
            continue
        replaced = {}
        if kind == 1:
            exercise, mistake = mistakes[index % len(mistakes)]
            replaced[exercise.piece] = mistaken_source(exercise, mistake)
        pieces = [replaced.get(p, without_markers(piece_sources()[p])) for p in PIECES]
        (folder / f"student{index:02d}.py").write_text(HEADER + "\n\n".join(pieces) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    report = Report("exercises_class")
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "class").mkdir()
        write_class(Path(folder) / "class", args.students)
        started = time.perf_counter()
        reports = check_class(Path(folder) / "class", Path(folder) / "out", language="en", jobs=args.jobs)
        seconds = time.perf_counter() - started
    passed = sum(r.passed for r in reports.values())
    report.table(
        "Checking a class with `labformer check --class` (every exercise of every submission)",
        ["submissions", "jobs", "wall time", "per submission", "exercises passed"],
        [[len(reports), args.jobs, f"{seconds:.1f} s", f"{seconds / len(reports):.2f} s",
          f"{passed}/{15 * len(reports)}"]],
    )  # fmt: skip
    met = seconds <= TARGET_SECONDS * len(reports) / 60
    report.target("60 submissions checked in at most 5 minutes on 2 cores", f"{seconds:.1f} s for {len(reports)}", met,
                  "" if met else f"{seconds - TARGET_SECONDS:.0f} s over")  # fmt: skip
    report.save()


if __name__ == "__main__":
    main()
