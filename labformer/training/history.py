"""Per-epoch (or per-evaluation) metrics, saved as JSON and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from labformer import runs
from labformer.io import atomic_write, write_json

__all__ = ["History"]


class History:
    """A list of rows (dicts of numbers), one per epoch or evaluation."""

    def __init__(self, rows: list[dict[str, float]] | None = None) -> None:
        self.rows: list[dict[str, float]] = list(rows or [])

    def append(self, **row: float) -> None:
        self.rows.append(row)

    def column(self, name: str) -> list[float]:
        return [row[name] for row in self.rows if name in row]

    def save(self, directory: Path) -> None:
        write_json(directory / runs.HISTORY, self.rows)
        names = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=names)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(directory / Path(runs.HISTORY).with_suffix(".csv"), lambda p: p.write_text(buffer.getvalue()))
