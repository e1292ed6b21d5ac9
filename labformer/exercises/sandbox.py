"""A submission's code, run apart: the child process that loads it, and the parent that judges it.

The child (``python -m labformer.exercises``) runs on a copy of the file in a temporary folder,
in its own session, with a memory limit; it loads the submission one statement (a ``.py``) or one cell
(a notebook) at a time, runs each requested exercise's cases, and writes only raw answers — never
verdicts — as JSON lines on a pipe of its own. Whatever the submission prints goes to a log, kept apart.
The parent computes the reference's answers itself, enforces the wall time (killing the child's whole
process group), restarts a child for the exercises left after a timeout or a crash, and judges.

This contains mistakes and accidents (endless loops, huge allocations, ``os._exit``, forks, errors at
import, deleting files beside it); it is not a security sandbox against a determined attacker.
"""

from __future__ import annotations

import ast
import contextlib
import json
import linecache
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOAD_SECONDS = 30.0  # to load (execute) the submission's file
EXERCISE_SECONDS = 20.0  # per exercise, all its cases
MEMORY_MB = 2048  # the submission's own allocations, beyond the checker's
NAMESPACE_NAME = "__labformer_check__"  # the submission's __name__: its `if __name__ == "__main__"` blocks stay off


# --------------------------------------------------------------------------- the submission's code


def code_units(path: Path) -> list[tuple[str, int, tuple[str, int]]]:
    """The submission as units to run one by one: (source, first line, label). A ``.py`` file gives its
    top-level statements; a notebook its code cells, without ``!`` and ``%`` lines (shell and magics).
    Where each comes from is ("line", n) or ("cell", n).

    A file that is not valid Python (or not a notebook) raises ValueError naming the problem.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text)["cells"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path.name} is not a Jupyter notebook ({error})") from None
        units = []
        for number, cell in enumerate(cells, 1):
            if cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            kept = [line if not line.lstrip().startswith(("!", "%")) else "" for line in source.splitlines()]
            units.append(("\n".join(kept) + "\n", 1, ("cell", number)))
        return units
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as error:
        return [(text, 1, ("line", error.lineno or 1))]  # run whole: the SyntaxError is the verdict
    lines = text.splitlines(keepends=True)
    return [
        ("".join(lines[node.lineno - 1 : node.end_lineno]), node.lineno, ("line", node.lineno)) for node in tree.body
    ]


def _load(path: Path, namespace: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs the submission's units into ``namespace``; returns the errors, each with where it happened."""
    errors = []
    for index, (source, line, label) in enumerate(code_units(path)):
        filename = f"{path}#{index}" if path.suffix == ".ipynb" else str(path)
        padded = "\n" * (line - 1) + source  # tracebacks and inspect name the file's own lines
        linecache.cache[filename] = (len(padded), None, padded.splitlines(keepends=True), filename)
        try:
            exec(compile(padded, filename, "exec"), namespace)
        except BaseException as error:  # SystemExit and KeyboardInterrupt from the submission too
            errors.append(
                {"where": list(label), "error": f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"}
            )
        _stop_if_forked()
    return errors


# --------------------------------------------------------------------------- the child

_PARENT_PID = os.getpid()
_FORKED = {"count": 0}


def _stop_if_forked() -> None:
    if os.getpid() != _PARENT_PID:
        os._exit(0)  # a copy made by the submission's fork: it never reports


def encode(value: Any) -> Any:
    """Answers as JSON: a tensor becomes {"shape": [...], "values": [...]} (float64)."""
    import torch

    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "values": value.flatten().tolist()}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def child(path: str, keys: list[str], result_fd: int, memory_mb: int) -> None:
    """The child's work: load, then run each exercise, reporting on ``result_fd``."""
    import torch

    from labformer.exercises.catalogue import BY_KEY
    from labformer.exercises.judge import pinned, run_cases, uses_builtin

    out = os.fdopen(result_fd, "w", encoding="utf-8")
    os.set_inheritable(result_fd, False)

    def report(event: dict[str, Any]) -> None:
        if os.getpid() == _PARENT_PID:
            out.write(json.dumps(event) + "\n")
            out.flush()

    os.register_at_fork(after_in_parent=lambda: _FORKED.__setitem__("count", _FORKED["count"] + 1))
    torch.set_num_threads(1)
    used = _virtual_memory()
    limit = used + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    namespace: dict[str, Any] = {"__name__": NAMESPACE_NAME, "__file__": path, "__builtins__": __builtins__}
    errors = _load(Path(path), namespace)
    report({"event": "loaded", "errors": errors, "forked": _FORKED["count"]})
    for key in keys:
        exercise = BY_KEY[key]
        report({"event": "start", "key": key})
        original = namespace.get(exercise.piece)
        builtin = uses_builtin(original, namespace) if original is not None else ""
        with pinned(namespace, exercise) as piece:
            results = run_cases(exercise, piece, path)
        _stop_if_forked()
        report({"event": "done", "key": key, "results": encode(results), "builtin": builtin,
                "missing": original is None, "forked": _FORKED["count"]})  # fmt: skip
    report({"event": "end"})
    out.close()
    os._exit(0)  # the submission's atexit handlers and threads do not get the last word


def _virtual_memory() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- the parent


@dataclass
class Run:
    """What the child reported for one submission: answers per exercise, events, notes."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> (status key, fields)
    load_errors: list[dict[str, Any]] = field(default_factory=list)
    forked: bool = False
    changed_files: list[str] = field(default_factory=list)
    output: str = ""


def decode(value: Any) -> Any:
    """The child's JSON answers back as Python values and float64 tensors; anything else is refused."""
    import torch

    if isinstance(value, dict):
        if set(value) == {"shape", "values"}:
            shape = [int(n) for n in value["shape"]]
            values = [float(x) for x in value["values"]]
            return torch.tensor(values, dtype=torch.float64).reshape(shape)
        return {str(k): decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"unexpected answer of type {type(value).__name__}")


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


def run_submission(
    path: Path, keys: list[str], *, timeout: float = EXERCISE_SECONDS, load_timeout: float = LOAD_SECONDS,
    memory_mb: int = MEMORY_MB,
) -> Run:  # fmt: skip
    """Runs ``keys``' exercises of the submission at ``path`` in child processes; returns what they said."""
    run = Run()
    pending = list(keys)
    logs: list[str] = []
    while pending:
        with tempfile.TemporaryDirectory(prefix="labformer-check-") as folder:
            copy = Path(folder) / path.name
            shutil.copyfile(path, copy)
            before = {p.name: p.stat().st_size for p in Path(folder).iterdir()}
            with tempfile.TemporaryFile() as output:  # unnamed: nothing the submission can delete
                _one_child(copy, pending, run, timeout, load_timeout, memory_mb, output)
                output.seek(0)
                logs.append(output.read().decode(errors="replace"))
            after = {p.name: p.stat().st_size for p in Path(folder).iterdir()}
            run.changed_files += [name for name, size in before.items() if after.get(name) != size]
    run.output = "".join(logs)[-4000:]
    run.changed_files = sorted(set(run.changed_files))
    return run


def _one_child(copy: Path, pending: list[str], run: Run, timeout: float, load_timeout: float, memory_mb: int,
               output: Any) -> None:  # fmt: skip
    """One child: runs the exercises still ``pending`` (removing each as it gets an answer or a failure)."""
    read, write = os.pipe()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "LABFORMER_CHECKING": "1", "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("PYTHONPATH", None)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root  # the checker's own labformer, whatever the submission's folder holds
    command = [sys.executable, "-m", "labformer.exercises", str(copy), ",".join(pending), str(write),
               str(memory_mb)]  # fmt: skip
    process = subprocess.Popen(command, pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=output,
                               stderr=subprocess.STDOUT, cwd=copy.parent, env=env,
                               start_new_session=True)  # fmt: skip
    os.close(write)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        with os.fdopen(read, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    current: str | None = None  # the exercise running; None while loading
    deadline = time.monotonic() + load_timeout
    try:
        while True:
            try:
                line = lines.get(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            if line == "" and process.poll() is not None and lines.empty():
                line = None  # gone, though a process it forked may still hold the pipe open
            if line == "" and time.monotonic() < deadline:
                continue
            if line == "":  # out of time: this exercise (or, while loading, all of them)
                limit = timeout if current else load_timeout
                for key in [current] if current else list(pending):
                    run.failures[key] = ("timeout", {"seconds": f"{limit:g}", "loading": current is None})
                    pending.remove(key)
                return
            if line is None:  # the child is gone without finishing
                code = process.wait()
                how = ("exit", {"code": code}) if code >= 0 else ("signal", {"signal": _signal_name(code)})
                for key in [current] if current else list(pending):
                    run.failures[key] = ("crashed", {"how": how, "loading": current is None})
                    pending.remove(key)
                return
            try:
                event = json.loads(line)
                kind = event["event"]
            except (ValueError, KeyError, TypeError):
                continue  # not the child's writing
            run.forked |= bool(event.get("forked"))
            if kind == "loaded":
                run.load_errors = [e for e in event.get("errors", []) if isinstance(e, dict)]
                deadline = time.monotonic() + timeout
            elif kind == "start" and event.get("key") in pending:
                current = event["key"]
                deadline = time.monotonic() + timeout
            elif kind == "done" and event.get("key") == current:
                try:
                    run.answers[current] = {"results": decode(event["results"]), "builtin": str(event["builtin"]),
                                            "missing": bool(event.get("missing"))}  # fmt: skip
                except (ValueError, KeyError, TypeError):
                    run.failures[current] = ("crashed", {"how": ("exit", {"code": "?"}), "loading": False})
                pending.remove(current)
                current = None
                deadline = time.monotonic() + timeout
            elif kind == "end":
                return
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # the child and whatever it started
        process.wait()
