"""The checker: verdicts on a submission's file (its code run apart), or on one piece in a notebook."""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labformer.exercises.catalogue import EXERCISES, Exercise, find
from labformer.exercises.judge import Verdict, judge, pinned, run_cases, uses_builtin
from labformer.exercises.messages import Messages
from labformer.exercises.sandbox import EXERCISE_SECONDS, LOAD_SECONDS, MEMORY_MB, Run, run_submission

SUBMISSION_SUFFIXES = (".py", ".ipynb")


@dataclass
class FileReport:
    """Every verdict on one submission, with what the submission printed and did, kept apart."""

    file: str
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def passed(self) -> int:
        return sum(v.status in ("pass", "builtin") for v in self.verdicts)

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "exercises": [v.as_json() for v in self.verdicts], "passed": self.passed,
                "total": len(self.verdicts), "notes": self.notes, "output": self.output}  # fmt: skip

    def text(self, messages: Messages) -> str:
        lines = [v.message for v in self.verdicts]
        lines += [f"! {note}" for note in self.notes]
        lines.append(messages.text("summary", passed=self.passed, total=len(self.verdicts)))
        return "\n".join(lines)


def _selected(only: str | None) -> list[Exercise]:
    return find(only) if only else list(EXERCISES)


def check_file(
    path: str | Path, *, language: str | None = None, only: str | None = None,
    timeout: float = EXERCISE_SECONDS, load_timeout: float = LOAD_SECONDS, memory_mb: int = MEMORY_MB,
) -> FileReport:  # fmt: skip
    """Checks a submission (``.py`` or ``.ipynb``): its code runs in a child process with limits; the
    reference's answers are computed here. ``only``: one exercise's (or piece's) name."""
    path = Path(path)
    if path.suffix not in SUBMISSION_SUFFIXES:
        raise ValueError(f"FILE must be a .py or .ipynb submission; got {path.name}")
    if not path.is_file():
        raise FileNotFoundError(f"FILE {path}: no such file")
    for name, value in (("--timeout", timeout), ("--memory-mb", memory_mb)):
        if value <= 0:
            raise ValueError(f"{name} must be positive; got {value}")
    messages = Messages(language)
    exercises = _selected(only)
    run = run_submission(path, [e.key for e in exercises], timeout=timeout, load_timeout=load_timeout,
                         memory_mb=memory_mb)  # fmt: skip
    verdicts = [_verdict(exercise, run, messages, memory_mb) for exercise in exercises]
    return FileReport(str(path), verdicts, _notes(run, messages), run.output)


def _verdict(exercise: Exercise, run: Run, messages: Messages, memory_mb: int) -> Verdict:
    name = exercise.key
    if name in run.failures:
        kind, details = run.failures[name]
        if kind == "timeout":
            return Verdict(name, "timeout", message=messages.text("status.timeout", name=name, **{
                "seconds": details["seconds"]}), details=details)  # fmt: skip
        how_key, how_fields = details["how"]
        how = messages.text(f"sandbox.{how_key}", **how_fields)
        return Verdict(name, "error", message=messages.text("status.crashed", name=name, how=how), details=details)
    answer = run.answers[name]
    if answer["missing"]:
        return Verdict(name, "not_done", message=messages.text("status.missing", name=name))
    results = answer["results"]
    if any("allocate memory" in r.get("error", "") or r.get("error", "").startswith("MemoryError") for r in results):
        return Verdict(name, "error", message=messages.text("status.memory", name=name, megabytes=memory_mb))
    return judge(exercise, results, messages, builtin=answer["builtin"])


def _notes(run: Run, messages: Messages) -> list[str]:
    notes = []
    for error in run.load_errors:
        kind, number = error["where"]
        where = messages.text(f"where.{'cell' if kind == 'cell' else 'line'}", number=number)
        notes.append(messages.text("sandbox.load_error", where=where, error=error.get("error", "?")))
    if run.changed_files:
        notes.append(messages.text("sandbox.deleted", files=", ".join(run.changed_files)))
    if run.forked:
        notes.append(messages.text("sandbox.forked"))
    return notes


def _namespace_of(piece: Any) -> dict[str, Any]:
    """The names a piece's code sees: a function's globals, or those of a class's methods."""
    if inspect.isfunction(piece):
        return piece.__globals__
    method = next((f for f in vars(piece).values() if inspect.isfunction(f)), None)
    return method.__globals__ if method is not None else vars(sys.modules[piece.__module__])


class ExerciseNotPassedError(AssertionError):
    """An exercise that does not pass, raised by ``check(..., strict=True)`` (nbgrader's hidden tests): in a
    notebook it shows as the verdict alone, without a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for how an exception is shown
        return [str(self)]


def check(piece: Any, *, strict: bool = False, lang: str | None = None) -> list[Verdict]:
    """Checks one piece in a notebook and prints the verdict: ``check(scaled_dot_product_attention)`` or
    ``check("scaled_dot_product_attention")`` (looked up among the caller's names).

    The piece runs here, in the notebook's process, with the reference's other pieces in place of yours.
    ``strict``: raise :class:`ExerciseNotPassedError` when it does not pass (for nbgrader's hidden tests).
    Inside ``labformer check`` (which runs the notebook's cells itself) it does nothing.
    """
    if os.environ.get("LABFORMER_CHECKING"):
        return []
    messages = Messages(lang)
    caller = inspect.currentframe().f_back  # type: ignore[union-attr]
    if isinstance(piece, str):
        exercises = find(piece)
        names = {**caller.f_globals, **caller.f_locals}  # type: ignore[union-attr]
        found = names.get(exercises[0].piece)
    elif inspect.isfunction(piece) or isinstance(piece, type):
        exercises = [e for e in EXERCISES if e.piece == piece.__name__] or find(piece.__name__)
        found = piece
    else:
        raise TypeError(f"check takes a lab piece (a function or a class) or its name; got {type(piece).__name__}")
    verdicts = []
    for exercise in exercises:
        if found is None:
            verdicts.append(Verdict(exercise.key, "not_done", message=messages.text("status.missing",
                                                                                     name=exercise.key)))  # fmt: skip
            continue
        namespace = _namespace_of(found)
        builtin = uses_builtin(found, namespace)
        with pinned(namespace, exercise):
            results = run_cases(exercise, found)
        verdicts.append(judge(exercise, results, messages, builtin=builtin))
    text = "\n".join(v.message for v in verdicts)
    print(text)
    if strict and any(v.status not in ("pass", "builtin") for v in verdicts):
        raise ExerciseNotPassedError(text)
    return verdicts
