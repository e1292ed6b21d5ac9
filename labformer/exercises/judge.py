"""Running a piece on an exercise's cases, and judging what it computed against the reference's answers.

``run_cases`` runs anywhere (a student's code runs it in a child process); ``judge`` runs in the
checker's own process, on plain data, with the reference's and the mistakes' answers computed there.
"""

from __future__ import annotations

import dis
import math
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from torch import Tensor

from labformer.exercises import probes, solutions
from labformer.exercises.catalogue import EXERCISES, PIECES, Exercise, Mistake, mistaken_piece
from labformer.exercises.messages import Messages

STATUSES = ("pass", "fail", "not_done", "error", "timeout", "builtin")
CaseResult = dict[str, Any]  # {"outputs": {...}} | {"not_done": True} | {"error": "Type: message", "line": n}

# Attributes whose use marks an answer as a built-in's rather than the lab's computation by hand
BUILTIN_ATTRIBUTES = frozenset({"scaled_dot_product_attention", "multi_head_attention_forward", "MultiheadAttention",
                                "TransformerEncoderLayer", "TransformerEncoder", "Transformer"})  # fmt: skip


def run_cases(exercise: Exercise, piece: Any, filename: str = "") -> list[CaseResult]:
    """``piece`` on each of the exercise's cases: its outputs, "not done" for a blank, or its error (with
    the line of ``filename``, the student's file, where it happened)."""
    results: list[CaseResult] = []
    for case in exercise.cases:
        try:
            if piece is None:
                raise probes.NotDone
            if exercise.probe == "module":
                outputs = probes.module_probe(piece, case.args, getattr(solutions, exercise.piece))
            else:
                outputs = probes.PROBES[exercise.probe](piece, case.args)
            results.append({"outputs": outputs})
        except (probes.NotDone, NotImplementedError):
            results.append({"not_done": True})
        except Exception as error:  # the student's code may raise anything: that is a verdict
            if "ellipsis" in str(error) or "NoneType" in str(error) and "not callable" in str(error):
                results.append({"not_done": True})  # a `...` or empty line of the scaffold, still to fill
                continue
            line = next((f.lineno for f in reversed(traceback.extract_tb(error.__traceback__))
                         if filename and f.filename == filename), None)  # fmt: skip
            text = " ".join(str(error).split())[:300]
            results.append({"error": f"{type(error).__name__}: {text}", "line": line})
    return results


@contextmanager
def pinned(namespace: dict[str, Any], exercise: Exercise) -> Iterator[Any]:
    """The exercise's piece from ``namespace``, with every other lab piece there replaced by the reference's
    while it runs: one mistake is reported once, where it lives, not in every piece built on it."""
    missing = object()
    saved = {name: namespace.get(name, missing) for name in PIECES if name != exercise.piece}
    try:
        for name in saved:
            namespace[name] = getattr(solutions, name)
        yield namespace.get(exercise.piece)
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def _code_objects(piece: Any) -> Iterator[types.CodeType]:
    functions = [piece] if isinstance(piece, types.FunctionType) else []
    if isinstance(piece, type):
        functions = [f for f in vars(piece).values() if isinstance(f, types.FunctionType)]
    stack = [f.__code__ for f in functions]
    while stack:
        code = stack.pop()
        yield code
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))


def uses_builtin(piece: Any, namespace: dict[str, Any]) -> str:
    """The built-in the piece calls instead of computing by hand ("F.scaled_dot_product_attention",
    "labformer"), or "" — read from its bytecode, the names resolved in the student's own namespace."""
    for code in _code_objects(piece):
        for instruction in dis.get_instructions(code):
            name = instruction.argval
            if not isinstance(name, str):
                continue
            if "ATTR" in instruction.opname or "METHOD" in instruction.opname:
                if name in BUILTIN_ATTRIBUTES:
                    return name
            elif instruction.opname == "LOAD_GLOBAL" and name not in PIECES:
                value = namespace.get(name)
                module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
                if isinstance(module, str) and module.startswith("labformer") and name != "check":
                    return f"labformer ({name})"
                if getattr(value, "__name__", "") in BUILTIN_ATTRIBUTES and module.startswith("torch"):
                    return name
    return ""


@cache
def reference_results(key: str) -> tuple[list[CaseResult], dict[str, list[CaseResult]]]:
    """The reference's answers to an exercise's cases, and each catalogued mistake's (computed once)."""
    exercise = next(e for e in EXERCISES if e.key == key)
    with torch.random.fork_rng():
        reference = run_cases(exercise, getattr(solutions, exercise.piece))
        mistakes = {m.id: run_cases(exercise, mistaken_piece(exercise, m)) for m in exercise.mistakes}
    return reference, mistakes


def same(a: Any, b: Any) -> bool:
    """Equal answers: tensors of one shape within 1e-4 of the larger's scale (NaN where NaN), else ==."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape:
            return False
        scale = 1.0 + float(torch.nan_to_num(b.abs(), posinf=0.0).max()) if b.numel() else 1.0
        return bool(torch.allclose(a, b, rtol=0.0, atol=1e-4 * scale, equal_nan=True))
    return a == b


def first_difference(got: CaseResult, expected: CaseResult) -> str | None:
    """The first check (an output's key) on which ``got`` differs from ``expected``; None if none does."""
    if "outputs" not in got or "outputs" not in expected:
        return None if got.keys() == expected.keys() else "error" if "error" in got else "outputs"
    for key, value in expected["outputs"].items():
        if key not in got["outputs"] or not same(got["outputs"][key], value):
            return key
    return None


def _matches(got: list[CaseResult], mistake: list[CaseResult]) -> bool:
    """A student's answers are a mistake's where every case agrees (both failing to run counts as agreeing)."""
    for mine, theirs in zip(got, mistake):
        if "error" in mine and "error" in theirs:
            continue
        if "outputs" not in mine or "outputs" not in theirs or mine["outputs"].keys() != theirs["outputs"].keys():
            return False
        if first_difference(mine, theirs) is not None:
            return False
    return True


@dataclass
class Verdict:
    """What the checker says of one exercise."""

    name: str
    status: str
    mistake: str | None = None
    message: str = ""
    check: str | None = None  # the first check that failed (an output's key)
    case: str | None = None  # the smallest input that shows it, as code
    expected: str | None = None
    got: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "mistake": self.mistake, "message": self.message,
                "check": self.check, "case": self.case, "expected": self.expected, "got": self.got}  # fmt: skip


def show(value: Any, messages: Messages, limit: int = 8) -> str:
    """A value as the student would print it, rounded to 4 decimals, cut after ``limit`` numbers."""
    if isinstance(value, Tensor):
        values = value.flatten()[:limit].tolist()
        text = ", ".join("nan" if math.isnan(x) else f"{x:.4f}" for x in values)
        more = ", …" if value.numel() > limit else ""
        if value.dim() == 1 and not more:
            return f"[{text}]"
        return messages.text("value.shape", shape=tuple(value.shape), values=text + more)
    if isinstance(value, list) and len(value) > limit:
        return messages.text("value.many", values=value[:limit], count=len(value))
    return str(value)


def judge(exercise: Exercise, got: list[CaseResult], messages: Messages, builtin: str = "") -> Verdict:
    """The verdict on a piece's answers ``got`` (from :func:`run_cases`), against the reference's."""
    name = exercise.key
    reference, mistakes = reference_results(name)
    if any("not_done" in result for result in got):
        return Verdict(name, "not_done", message=messages.text("status.not_done", name=name))
    failing = next((i for i, (g, r) in enumerate(zip(got, reference)) if first_difference(g, r) is not None), None)
    accepted = next((m for m in exercise.mistakes if m.accepted and _matches(got, mistakes[m.id])), None)
    if failing is None or accepted is not None:
        status = "builtin" if builtin else "pass"
        message = messages.text(f"status.{status}", name=name, builtin=builtin)
        if accepted is not None:
            message += " " + messages.mistake(accepted.id)
        return Verdict(name, status, mistake=accepted.id if accepted else None, message=message)
    mistake: Mistake | None = next((m for m in exercise.mistakes if _matches(got, mistakes[m.id])), None)
    case = exercise.cases[failing]
    check = first_difference(got[failing], reference[failing])
    shown = case.describe(messages)
    verdict = Verdict(name, "fail", mistake=mistake.id if mistake else None, check=check, case=shown)
    if "error" in got[failing]:
        error = got[failing]
        line = error.get("line")
        verdict.got = messages.text("error.line", error=error["error"], line=line) if line else error["error"]
        verdict.status = "error" if mistake is None else "fail"
        lead = messages.mistake(mistake.id) if mistake else messages.text("status.error", name=name, error=verdict.got)
    else:
        expected_value = reference[failing]["outputs"].get(check)
        got_value = got[failing]["outputs"].get(check, messages.text("value.missing"))
        verdict.expected, verdict.got = show(expected_value, messages), show(got_value, messages)
        lead = messages.mistake(mistake.id) if mistake else messages.text(f"check.{check}")
    lines = [messages.text("verdict.fail", name=name, lead=lead), messages.text("verdict.case", case=shown)]
    if verdict.expected is not None:
        lines.append(messages.text("verdict.expected", value=verdict.expected, check=check))
    lines.append(messages.text("verdict.got", value=verdict.got, check=check))
    lab = next((i for i, c in enumerate(exercise.cases) if c.lab), None)
    if lab is not None and lab != failing and "outputs" in got[lab] and first_difference(got[lab], reference[lab]):
        key = first_difference(got[lab], reference[lab])
        lines.append(messages.text("verdict.lab", expected=show(reference[lab]["outputs"].get(key), messages),
                                   got=show(got[lab]["outputs"].get(key, "—"), messages)))  # fmt: skip
    verdict.message = "\n".join(lines)
    return verdict
