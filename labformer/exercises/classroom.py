"""A class's submissions checked together: ``grades.csv`` and a one-file ``report.html`` for the teacher."""

from __future__ import annotations

import csv
import html
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labformer.exercises.catalogue import BY_KEY
from labformer.exercises.checker import SUBMISSION_SUFFIXES, FileReport, check_file
from labformer.exercises.messages import Messages


def submissions(folder: Path) -> dict[str, Path]:
    """Each student's submission: a ``.py``/``.ipynb`` file (its stem names the student), or a sub-folder
    (named after the student) holding one such file — a notebook before a ``.py`` where it holds both."""
    if not folder.is_dir():
        raise ValueError(f"--class {folder}: not a folder")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix in SUBMISSION_SUFFIXES:
            found.setdefault(entry.stem, entry)
        elif entry.is_dir() and not entry.name.startswith("."):
            files = sorted((p for p in entry.rglob("*") if p.suffix in SUBMISSION_SUFFIXES and ".ipynb_checkpoints"
                            not in p.parts), key=lambda p: (p.suffix != ".ipynb", str(p)))  # fmt: skip
            if files:
                found[entry.name] = files[0]
    if not found:
        raise ValueError(f"--class {folder}: no .py or .ipynb submission in it, nor in its sub-folders")
    return found


def grade(verdict_status: str, mistake: str | None) -> str:
    """A grades.csv cell: pass, builtin, the mistake's id, fail (no catalogued mistake), not_done, error, timeout."""
    return mistake if verdict_status == "fail" and mistake else verdict_status


def check_class(folder: str | Path, out: str | Path, *, language: str | None = None, jobs: int = 2,
                **limits: Any) -> dict[str, FileReport]:  # fmt: skip
    """Checks every submission in ``folder`` (``jobs`` at a time) and writes grades.csv and report.html."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1; got {jobs}")
    found = submissions(Path(folder))
    messages = Messages(language)
    with ThreadPoolExecutor(jobs) as pool:
        reports = dict(zip(found, pool.map(lambda p: check_file(p, language=messages.language, **limits),
                                           found.values())))  # fmt: skip
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "grades.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        first = next(iter(reports.values()))
        writer.writerow(["student", *(v.name for v in first.verdicts), "passed"])
        for student, report in reports.items():
            writer.writerow([student, *(grade(v.status, v.mistake) for v in report.verdicts), report.passed])
    (target / "report.html").write_text(report_html(reports, messages), encoding="utf-8")
    return reports


_STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left}.bar{background:#e8e8e8;width:8em;height:.8em;display:inline-block}
.bar span{background:#2e7d32;height:100%;display:block}pre{white-space:pre-wrap;margin:.2em 0;font-size:13px}
.pass{background:#e8f5e9}.fail{background:#ffebee}.not_done{background:#fafafa;color:#777}
.error,.timeout{background:#fff3e0}.builtin{background:#fffde7}code{font-size:13px}"""


def report_html(reports: dict[str, FileReport], messages: Messages) -> str:
    """The class at a glance: per exercise the share that passes and the commonest mistakes (count, one
    student's message as an example); then a line per student. One file, no scripts, no network."""
    text = messages.text
    esc = html.escape
    rows = []
    names = [v.name for v in next(iter(reports.values())).verdicts]
    for index, exercise in enumerate(BY_KEY[name] for name in names):
        verdicts = [report.verdicts[index] for report in reports.values()]
        passing = sum(v.status in ("pass", "builtin") for v in verdicts)
        share = passing / len(verdicts)
        counts = Counter(v.mistake or v.status for v in verdicts if v.status not in ("pass", "builtin"))
        items = []
        for reason, count in counts.most_common(3):
            example = next(v for v in verdicts if (v.mistake or v.status) == reason)
            label = reason if example.mistake else text(f"report.{'unknown' if reason == 'fail' else reason}")
            items.append(f"<li><code>{esc(label)}</code> × {count}<pre>{esc(example.message)}</pre></li>")
        common = f"<ul>{''.join(items)}</ul>" if items else text("report.none")
        rows.append(f"<tr><td>{exercise.number}. <code>{esc(exercise.key)}</code></td><td>{messages.percent(share)} "
                    f"<span class=bar><span style='width:{100 * share:.0f}%'></span></span> ({passing}/{len(verdicts)})"
                    f"</td><td>{common}</td></tr>")  # fmt: skip
    students = []
    for student, report in reports.items():
        cells = "".join(f"<td class={v.status} title='{esc(v.message)}'>{esc(grade(v.status, v.mistake))}</td>"
                        for v in report.verdicts)  # fmt: skip
        students.append(f"<tr><td>{esc(student)}</td><td>{report.passed}/{len(report.verdicts)}</td>{cells}</tr>")
    heads = "".join(f"<th>{BY_KEY[name].number}</th>" for name in names)
    title = text("report.title")
    return (f"<!doctype html><html lang={messages.language}><meta charset=utf-8><title>{title}</title>"
            f"<style>{_STYLE}</style><h1>{title}</h1><p>{text('report.submissions', count=len(reports))}. "
            f"{text('report.legend')}</p><table><tr><th>{text('report.exercise')}</th><th>{text('report.passes')}"
            f"</th><th>{text('report.common')}</th></tr>{''.join(rows)}</table><h2>{text('report.students')}</h2>"
            f"<table><tr><th>{text('report.student')}</th><th>{text('report.score')}</th>{heads}</tr>"
            f"{''.join(students)}</table></html>\n")  # fmt: skip
