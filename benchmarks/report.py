"""What every benchmark records: its tables and targets, with the machine, the versions, the command and the
date, as ``benchmarks/results/<benchmark>/<cpu>.json`` (a later run on the same CPU replaces the file).

``scripts/performance_page.py`` turns these files into the docs' performance page.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from timing import print_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROFILE_SWITCHES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def slug(text: str) -> str:
    """A file-name form of a CPU's name or features: lower case, runs of other characters as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def short_cpu(cpu: str, features: str, profile: bool = False) -> str:
    """How a table names a CPU: "Intel Xeon (AMX-BF16)", "AMD EPYC 7B13 (AVX2), AVX2 profile" — the model
    without trademarks and generic words, its widest feature, and the profile if one was in force."""
    name = re.sub(r"\((R|TM)\)|\b(Processor|CPU|\d+-Core)\b|@.*", " ", cpu, flags=re.IGNORECASE)
    name = " ".join(name.split()) or "unknown CPU"
    return f"{name} ({features.split(', ')[-1]}){', AVX2 profile' if profile else ''}"


def machine() -> dict[str, Any]:
    """The machine a result was measured on: CPU model and features, cores, torch, its threads, Python, and
    the CPU-profile switches in force (empty: the CPU as it is)."""
    import torch

    from labformer.training.runtime import cpu_info

    cpu = cpu_info()
    return {
        "cpu": cpu.model,
        "cpu_features": cpu.features,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "profile": {name: os.environ[name] for name in PROFILE_SWITCHES if name in os.environ},
    }


class Report:
    """One benchmark run's tables and targets, printed as they come and saved together by :meth:`save`."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.tables: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def table(self, caption: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Prints a Markdown table and keeps it (cells as shown) under ``caption``."""
        print(f"\n{caption}\n", flush=True)
        print_table(headers, rows)
        self.tables.append({"caption": caption, "headers": list(headers), "rows": [[str(c) for c in r] for r in rows]})

    def target(self, target: str, measured: str, met: bool, gap: str = "") -> None:
        """A target, what was measured, whether it is met, and if not by how much (``gap``)."""
        self.targets.append({"target": target, "measured": measured, "met": bool(met), "gap": gap})
        print(f"target {target}: {measured} -> {'met' if met else 'missed ' + gap}", flush=True)

    def note(self, text: str) -> None:
        """A sentence printed under the tables (what the rows mean, what the run used)."""
        self.notes.append(text)
        print(text, flush=True)

    def save(self, extra: dict[str, Any] | None = None) -> Path:
        """Writes the result file for this CPU (and profile, if one is in force); returns its path."""
        facts = machine()
        name = f"{slug(facts['cpu'])}-{slug(facts['cpu_features'])}"
        if facts["profile"]:
            name += "-avx2-profile"
        record = {
            "benchmark": self.benchmark,
            "command": shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(),
            **facts,
            "tables": self.tables,
            "targets": self.targets,
            "notes": self.notes,
            **(extra or {}),
        }
        folder = RESULTS / self.benchmark
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json"
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        print(f"\nwritten: {path.relative_to(ROOT)}", flush=True)
        return path
