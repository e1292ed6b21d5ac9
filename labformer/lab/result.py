"""What every lab experiment returns: its numbers, the lab's published values, and a figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

__all__ = ["Experiment", "Result"]


@dataclass
class Result:
    """One experiment's outcome.

    ``numbers`` maps a label to a value (a float, or a nested list for vectors and matrices);
    ``lab_values`` maps some of the same labels to the value printed in the lab (LAB.md).
    """

    name: str
    title: str
    part: str
    summary: str
    numbers: dict[str, Any]
    figure: Figure
    lab_values: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The numbers as text, each next to the lab's value where the lab gives one."""
        out = []
        for label, value in self.numbers.items():
            line = f"{label}: {_format(value)}"
            if label in self.lab_values:
                line += f"   (lab: {_format(self.lab_values[label])})"
            out.append(line)
        return out


@dataclass
class Experiment:
    name: str
    part: str
    description: str
    run: Any  # Callable[..., Result]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)
