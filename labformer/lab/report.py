"""The lab report: every experiment's figure (PNG) and numbers, as one self-contained HTML page and Markdown."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib.pyplot as plt

from labformer.io import atomic_write
from labformer.lab import EXPERIMENTS, run, run_arguments
from labformer.lab.result import Result, _format
from labformer.plots import save_figure

__all__ = ["write_report"]


def _png(result: Result) -> bytes:
    buffer = io.BytesIO()
    result.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _table_rows(result: Result) -> list[tuple[str, str, str]]:
    return [
        (label, _format(value), _format(result.lab_values[label]) if label in result.lab_values else "")
        for label, value in result.numbers.items()
    ]


def write_report(out: str | Path, run_dirs: list[str] | None = None) -> list[Result]:
    """Runs every experiment; writes ``<name>.png`` for each, ``report.html`` and ``report.md`` in ``out``.
    ``run_dirs``: trained runs, each given to the experiments that read its kind (``RUN_KINDS``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run(name, **run_arguments(name, run_dirs)) for name in EXPERIMENTS]
    sections_html, sections_md, part = [], ["# Laboratoire 8: Transformers — labformer report", ""], None
    for result in results:
        png = _png(result)
        save_figure(result.figure, out / f"{result.name}.png")
        if result.part != part:
            part = result.part
            sections_html.append(f"<h2>{html.escape(part)}</h2>")
            sections_md += [f"## {part}", ""]
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
            for a, b, c in _table_rows(result)
        )
        sections_html.append(
            f'<section id="{result.name}"><h3>{html.escape(result.title)}</h3><p>{html.escape(result.summary)}</p>'
            f"<table><tr><th>quantity</th><th>labformer</th><th>lab</th></tr>{rows}</table>"
            f'<img alt="{result.name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f'<p><a href="{result.name}.png" download="{result.name}.png">Save PNG</a></p></section>'
        )
        sections_md += [
            f"### {result.title}",
            "",
            result.summary,
            "",
            "| quantity | labformer | lab |",
            "|---|---|---|",
        ]
        sections_md += [f"| {a} | {b} | {c} |" for a, b, c in _table_rows(result)]
        sections_md += ["", f"![{result.name}]({result.name}.png)", ""]
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:auto;padding:1em}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}"
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>labformer lab report</title>'
        f"<style>{style}</style></head><body><h1>Laboratoire 8: Transformers — labformer report</h1>"
        f"{''.join(sections_html)}</body></html>\n"
    )
    atomic_write(out / "report.html", lambda p: p.write_text(page))
    atomic_write(out / "report.md", lambda p: p.write_text("\n".join(sections_md)))
    plt.close("all")
    return results
