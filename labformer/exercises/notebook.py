"""The exercises as a student's notebook and Python file, or as the teacher's copy (an nbgrader source).

The teacher's copy holds the reference answers between nbgrader's ``### BEGIN SOLUTION`` and
``### END SOLUTION`` markers, graded check cells with points and a hidden strict check, and model answers
to the lab's questions; the student's copy is what ``nbgrader generate_assignment`` makes of it: each
answer replaced by ``raise NotImplementedError()``, hidden checks and model answers removed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from labformer.colab import SOURCE, install_cell
from labformer.exercises.catalogue import EXERCISES, Exercise, piece_sources
from labformer.exercises.messages import Messages

STEM = "lab8-exercises"
SETUP = """\
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from labformer.exercises import check
"""
# A picture after some exercises, as in the lab; a blank piece prints "not done yet" instead of failing.
# Its words (NOT_DONE, KEYS, ...) are put in the notebook's language by ``_demo``.
DEMOS = {
    "attention_alpha": """\
q = F.normalize(torch.tensor([[3.0, 3.0]]), dim=1)
k = F.normalize(torch.tensor([[2.0, 1.5], [-4, 3], [0, 3], [-1, -4]]), dim=1)
try:
    alpha = attention_alpha(q, k)
    plt.arrow(0, 0, *q[0].tolist(), head_width=0.05, color="C4", label="q")
    for i, k_i in enumerate(k):
        plt.arrow(0, 0, *k_i.tolist(), head_width=0.05, color=f"C{i}", label=f"k{i}: α = {alpha[0, i]:.3f}")
    plt.gca().set_aspect("equal")
    plt.legend()
    plt.show()
except NotImplementedError:
    print(NOT_DONE.format(name="attention_alpha"))
""",
    "masked_attention_weights": """\
q = F.normalize(torch.tensor([[3.0, 3.0], [-1, 3.2], [0.2, -0.4], [0, -1]]), dim=1).unsqueeze(0)
k = F.normalize(torch.tensor([[2.0, 1.5], [-4, 3], [0, 3], [-1, -4]]), dim=1).unsqueeze(0)
mask = torch.tril(torch.ones(4, 4, dtype=torch.bool))
try:
    plt.imshow(masked_attention_weights(q, k, mask)[0].numpy())
    plt.xlabel("KEYS")
    plt.ylabel("QUERIES")
    plt.colorbar()
    plt.show()
except NotImplementedError:
    print(NOT_DONE.format(name="masked_attention_weights"))
""",
    "position_encoding": """\
try:
    plt.imshow(position_encoding(64, 128).squeeze().numpy())
    plt.xlabel("DIMENSION")
    plt.ylabel("POSITION")
    plt.show()
except NotImplementedError:
    print(NOT_DONE.format(name="position_encoding"))
""",
}
_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n", re.MULTILINE | re.DOTALL)
_HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n.*?^### END HIDDEN TESTS\n", re.MULTILINE | re.DOTALL)


def blank(source: str) -> str:
    """The student's form of a piece: each answer region replaced by ``raise NotImplementedError()``."""
    return _REGION.sub(lambda m: f"{m.group(1)}raise NotImplementedError()\n", source)


def _demo(code: str, messages: Messages) -> str:
    words = {"NOT_DONE": repr(messages.text("status.not_done", name="{name}"))}
    words |= {word: repr(messages.text(f"nb.{word.lower()}")) for word in ("KEYS", "QUERIES", "DIMENSION", "POSITION")}
    for word, text in words.items():
        code = code.replace(f'"{word}"', text).replace(word, text)
    return code


def _grade_cell(exercise: Exercise) -> str:
    return (f'check("{exercise.key}")\n### BEGIN HIDDEN TESTS\ncheck("{exercise.key}", strict=True)\n'
            "### END HIDDEN TESTS\n")  # fmt: skip


def _cell(kind: str, source: str, nbgrader: dict[str, Any] | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
    if kind == "code":
        cell["execution_count"] = None
        cell["outputs"] = []
    if nbgrader is not None:
        cell["metadata"]["nbgrader"] = {"schema_version": 3, **nbgrader}
    return cell


def cells(messages: Messages, solutions: bool, install_from: str | None = None) -> list[dict[str, Any]]:
    """The notebook's cells, in the lab's order: the install cell (labformer from ``install_from``, default
    :data:`labformer.colab.SOURCE`), the imports, then its parts, each exercise, its check, its questions."""
    text = messages.text
    intro = text("nb.title") + "\n\n" + text("nb.intro") + ("\n\n" + text("nb.solutions") if solutions else "")
    install = install_cell(mnist=False, device=False, source=install_from or SOURCE, comment=text("nb.install_comment"),
                           where=text("nb.install_where"), missing=text("nb.install_missing"))  # fmt: skip
    out = [_cell("markdown", intro), _cell("code", install), _cell("code", SETUP)]
    sources = piece_sources()
    written: set[str] = set()
    part = 0
    for exercise in EXERCISES:
        if exercise.part != part:
            part = exercise.part
            out.append(_cell("markdown", text(f"nb.part{part}")))
        key = exercise.key
        out.append(_cell("markdown", text(f"ex.{key}.title") + "\n\n" + text(f"ex.{key}.text")))
        if exercise.piece not in written:  # the mask fills the same function as exercise 3
            written.add(exercise.piece)
            source = sources[exercise.piece]
            out.append(_cell("code", source if solutions else blank(source),
                             {"grade": False, "solution": True, "locked": False,
                              "grade_id": f"{key}-answer"}))  # fmt: skip
        grade = _grade_cell(exercise)
        out.append(_cell("code", grade if solutions else _HIDDEN.sub("", grade),
                         {"grade": True, "solution": False, "locked": True, "points": exercise.points,
                          "grade_id": f"{key}-check"}))  # fmt: skip
        if key in DEMOS:
            out.append(_cell("code", _demo(DEMOS[key], messages)))
        for number in range(1, exercise.questions + 1):
            out.append(_cell("markdown", f"**Q{number}.** " + text(f"ex.{key}.q{number}")))
            answer = text("nb.answer") + " " + text(f"ex.{key}.a{number}") if solutions else text("nb.your_answer")
            out.append(_cell("markdown", answer, {"grade": True, "solution": True, "locked": False, "points": 1,
                                                   "grade_id": f"{key}-q{number}"}))  # fmt: skip
    return out


def notebook(messages: Messages, solutions: bool, install_from: str | None = None) -> dict[str, Any]:
    """The whole notebook (nbformat 4) as JSON data."""
    return {
        "cells": cells(messages, solutions, install_from),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def as_python(data: dict[str, Any]) -> str:
    """A notebook as one Python file in the percent format (``# %%`` cells; Markdown as comments), which
    VS Code, Spyder and jupytext read as cells and plain Python runs top to bottom."""
    chunks = []
    for cell in data["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            chunks.append("# %% [markdown]\n" + "".join(f"# {line}".rstrip() + "\n" for line in source.splitlines()))
        else:
            chunks.append("# %%\n" + source)
    return "\n".join(chunks)


def write_exercises(
    out: str | Path, language: str | None = None, solutions: bool = False, *, install_from: str | None = None
) -> list[Path]:
    """Writes the notebook and the Python file into ``out``; returns their paths. ``install_from`` is what the
    first cell installs labformer from where it is missing (a wheel's address, a repository, a name)."""
    messages = Messages(language)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = STEM + ("-solutions" if solutions else "")
    data = notebook(messages, solutions, install_from)
    paths = [folder / f"{stem}.ipynb", folder / f"{stem}.py"]
    paths[0].write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(as_python(data), encoding="utf-8")
    return paths
