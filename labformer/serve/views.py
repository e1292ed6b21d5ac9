"""The pages' attention views drawn without a browser, from the same answers the web API gives:
``labformer attention RUN_DIR --image digit.png --out view.png`` (or ``--text``; ``.png``, ``.svg`` or a
standalone ``.html`` that opens offline).

- :func:`digit_view`: the input as the model sees it, the probabilities, the rollout, the selected head
  enlarged, and the class token's attention for every layer × head (the digits page).
- :func:`text_view`: a text shaded by one character's attention (one head, or the mean of a layer's heads),
  and every layer × head's causal attention matrix (the text page).
- :func:`seq2seq_view`: the output, and one kind of attention (encoder, decoder or cross) for every
  layer × head (the Seq2seq page).

Layers and heads are counted from 1, as the pages label them.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labformer.io import atomic_write  # noqa: E402

__all__ = ["FORMATS", "digit_view", "save_view", "seq2seq_view", "text_view"]

FORMATS = (".png", ".svg", ".html")
KINDS = ("encoder", "decoder", "cross")


def _choose(value: int | None, count: int, flag: str) -> int | None:
    """A 1-based ``value`` checked against ``count`` and made 0-based (None stays None)."""
    if value is None:
        return None
    if not 1 <= value <= count:
        raise ValueError(f"{flag} must be between 1 and {count}; got {value}")
    return value - 1


def _picture(axis: plt.Axes, image: np.ndarray, extent: tuple[float, float, float, float] | None = None) -> None:
    """The 0-255 input: (H, W) in grey, or (H, W, 3) in colour."""
    if image.ndim == 3:  # matplotlib reads float colours as 0-1: give it the bytes
        axis.imshow(np.clip(np.rint(image), 0, 255).astype(np.uint8), extent=extent)
    else:
        axis.imshow(image, cmap="gray", vmin=0, vmax=255, extent=extent)


def _overlay(axis: plt.Axes, image: np.ndarray, weights: np.ndarray, grid: int) -> None:
    """The input with ``weights`` (grid × grid, scaled to their maximum) over it, as the page draws."""
    size = image.shape[0]
    _picture(axis, image, extent=(0, size, size, 0))
    heat = weights.reshape(grid, grid)
    axis.imshow(heat / max(float(heat.max()), 1e-12), cmap="inferno", alpha=0.6, extent=(0, size, size, 0))
    axis.set_xticks([])
    axis.set_yticks([])


def digit_view(answer: dict[str, Any], layer: int | None = None, head: int | None = None) -> Figure:
    """The digits page for ``answer`` (``POST /api/digits/predict``'s), head (``layer``, ``head``) enlarged
    (default: the last layer's first head)."""
    attention = answer["attention"]
    layers, heads, grid = attention["layers"], attention["heads"], attention["grid"]
    l, h = _choose(layer, layers, "--layer"), _choose(head, heads, "--head")  # noqa: E741
    chosen = (layers - 1 if l is None else l, 0 if h is None else h)
    image = np.asarray(answer["input"], dtype=np.float64)
    cls = np.asarray(attention["cls"], dtype=np.float64)  # (layers, heads, patches)
    figure = plt.figure(figsize=(max(8.0, 1.3 * heads + 1), 3.2 + 1.3 * layers))
    top = figure.add_gridspec(2, 4, height_ratios=[3.2, 1.3 * layers], hspace=0.35, wspace=0.45)
    axis = figure.add_subplot(top[0, 0])
    _picture(axis, image)
    axis.set_title("what the model\nsees", fontsize=9)
    axis.axis("off")
    axis = figure.add_subplot(top[0, 1])
    classes, probabilities = answer["classes"], answer["probabilities"]
    axis.barh(range(len(classes)), probabilities, color="#4c72b0")
    axis.set_yticks(range(len(classes)), classes, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    prediction = answer["prediction"] if answer["prediction"] is not None else "no ink"
    axis.set_title(f"prediction: {prediction}", fontsize=9)
    axis = figure.add_subplot(top[0, 2])
    _overlay(axis, image, np.asarray(attention["rollout"]), grid)
    axis.set_title("rollout (all layers)", fontsize=9)
    axis = figure.add_subplot(top[0, 3])
    _overlay(axis, image, cls[chosen], grid)
    axis.set_title(f"layer {chosen[0] + 1}, head {chosen[1] + 1}", fontsize=9)
    cells = top[1, :].subgridspec(layers, heads, wspace=0.05, hspace=0.1)
    for l in range(layers):  # noqa: E741 - l for layer, as in the pages
        for h in range(heads):
            axis = figure.add_subplot(cells[l, h])
            _overlay(axis, image, cls[l, h], grid)
            if (l, h) == chosen:
                for spine in axis.spines.values():
                    spine.set(color="#e34a33", linewidth=2.5)
            if l == 0:
                axis.set_title(f"head {h + 1}", fontsize=8)
            if h == 0:
                axis.set_ylabel(f"layer {l + 1}", fontsize=8)
    figure.suptitle("the class token's attention over the patches, head by head", fontsize=11)
    return figure


def _shade_text(axis: plt.Axes, tokens: list[str], weights: np.ndarray, position: int) -> None:
    """``tokens`` in rows of monospace cells, each shaded by its weight; the attending character outlined."""
    per_row = 48
    rows = (len(tokens) + per_row - 1) // per_row
    scaled = weights / max(float(weights.max()), 1e-12)
    colours = plt.get_cmap("YlOrRd")
    for i, token in enumerate(tokens):
        x, y = i % per_row, rows - 1 - i // per_row
        face = colours(float(scaled[i])) if i <= position else (1, 1, 1, 1)
        edge = "#1f4e9c" if i == position else "none"
        axis.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=face, edgecolor=edge, linewidth=2))
        shown = {"\n": "↵", " ": "␣"}.get(token, token)
        axis.text(x + 0.5, y + 0.5, shown, ha="center", va="center", family="monospace", fontsize=9)
    axis.set_xlim(0, per_row)
    axis.set_ylim(0, rows)
    axis.set_aspect("equal")
    axis.axis("off")


def text_view(
    answer: dict[str, Any], position: int | None = None, layer: int | None = None, head: int | None = None
) -> Figure:
    """The text page for ``answer`` (``POST /api/text/attention``'s): the text shaded by the attention of
    the character at ``position`` (1-based; default the last) in head (``layer``, ``head``) — the mean of
    the layer's heads without ``head``; default the last layer — and every layer × head's matrix."""
    tokens, matrices = answer["tokens"], np.asarray(answer["attention"], dtype=np.float64)  # (L, H, T, T)
    layers, heads = matrices.shape[:2]
    where = _choose(position, len(tokens), "--position")
    where = len(tokens) - 1 if where is None else where
    l = _choose(layer, layers, "--layer")  # noqa: E741
    l = layers - 1 if l is None else l  # noqa: E741
    h = _choose(head, heads, "--head")
    weights = matrices[l, :, where].mean(0) if h is None else matrices[l, h, where]
    rows = (len(tokens) + 47) // 48
    figure = plt.figure(figsize=(max(9.0, 1.6 * heads), 0.2 * rows + 0.9 + 1.6 * layers))
    grid = figure.add_gridspec(2, 1, height_ratios=[0.2 * rows + 0.4, 1.6 * layers], hspace=0.2)
    axis = figure.add_subplot(grid[0])
    _shade_text(axis, tokens, weights, where)
    which = f"head {h + 1}" if h is not None else "mean of its heads"
    axis.set_title(f"what character {where + 1} ({tokens[where]!r}) attends to: layer {l + 1}, {which}", fontsize=9)
    cells = grid[1].subgridspec(layers, heads, wspace=0.08, hspace=0.12)
    for i in range(layers):
        for j in range(heads):
            axis = figure.add_subplot(cells[i, j])
            axis.imshow(matrices[i, j], cmap="viridis", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if (i, j) == (l, h):
                for spine in axis.spines.values():
                    spine.set(color="#e34a33", linewidth=2.5)
            if i == 0:
                axis.set_title(f"head {j + 1}", fontsize=8)
            if j == 0:
                axis.set_ylabel(f"layer {i + 1}", fontsize=8)
    figure.suptitle("causal attention: each character (rows) over the characters before it (columns)", fontsize=11)
    return figure


def seq2seq_view(answer: dict[str, Any], kind: str = "cross", layer: int | None = None) -> Figure:
    """The Seq2seq page for ``answer`` (``POST /api/seq2seq/translate``'s): one ``kind`` of attention
    ("encoder", "decoder" or "cross") for every head of every layer (or of ``layer`` only)."""
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
    matrices = np.asarray(answer["attention"][kind], dtype=np.float64)  # (L, H, rows, columns)
    chosen = _choose(layer, matrices.shape[0], "--layer")
    shown = range(matrices.shape[0]) if chosen is None else [chosen]
    heads = matrices.shape[1]
    row_labels = {"encoder": answer["source_tokens"], "decoder": answer["decoder_tokens"]}
    rows = row_labels.get(kind, answer["output_tokens"])
    columns = {"encoder": answer["source_tokens"], "decoder": answer["decoder_tokens"]}.get(
        kind, answer["source_tokens"]
    )
    labels = lambda tokens: [{" ": "␣"}.get(t, t) for t in tokens]  # noqa: E731
    side = 0.16 * max(len(rows), len(columns)) + 1.2
    figure, axes = plt.subplots(len(shown), heads, figsize=(side * heads, side * len(shown)), squeeze=False)
    for r, l in enumerate(shown):  # noqa: E741
        for h in range(heads):
            axis = axes[r, h]
            axis.imshow(matrices[l, h], cmap="viridis", vmin=0, vmax=1, aspect="auto")
            axis.set_xticks(range(len(columns)), labels(columns), fontsize=6)
            axis.set_yticks(range(len(rows)), labels(rows), fontsize=6)
            axis.set_title(f"layer {l + 1}, head {h + 1}", fontsize=8)
    names = {"encoder": "encoder self-attention", "decoder": "decoder self-attention", "cross": "cross-attention"}
    figure.suptitle(f"{answer['text']!r} → {answer['output']!r}: {names[kind]}", fontsize=11)
    figure.tight_layout()
    return figure


def save_view(figure: Figure, path: Path, title: str, details: list[str]) -> None:
    """Writes ``figure`` to ``path`` (atomically) as PNG, SVG, or a standalone HTML page holding the SVG
    with ``title`` and the ``details`` lines (no script, no link: it opens offline). Closes the figure."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--out must end in {', '.join(FORMATS)}; got {path.name}")
    try:
        if suffix == ".png":
            atomic_write(path, lambda p: figure.savefig(p, format="png", dpi=110, bbox_inches="tight"))
        elif suffix == ".svg":
            atomic_write(path, lambda p: figure.savefig(p, format="svg", bbox_inches="tight"))
        else:
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", bbox_inches="tight")
            svg = buffer.getvalue()
            svg = svg[svg.index("<svg") :]  # the element only: no XML prolog inside HTML
            png = io.BytesIO()
            figure.savefig(png, format="png", dpi=110, bbox_inches="tight")
            lines = "".join(f"<li>{html.escape(line)}</li>" for line in details)
            page = (
                '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em;"
                "max-width:1200px}} svg{max-width:100%;height:auto}</style></head><body>"
                f"<h1>{html.escape(title)}</h1><ul>{lines}</ul>{svg}"
                f'<p><a download="{html.escape(path.stem)}.png" href="data:image/png;base64,'
                f'{base64.b64encode(png.getvalue()).decode()}">Save PNG</a></p></body></html>\n'
            )
            atomic_write(path, lambda p: p.write_text(page, encoding="utf-8"))
    finally:
        plt.close(figure)
