"""Part 1 of the lab as experiments: attention on the lab's vectors, masks, permutations, position
encodings, why 1/√d, attention as message passing, receptive fields, self- vs cross-attention."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from labformer.attention import attention_weights, scaled_dot_product_attention
from labformer.decoder import DecoderLayer
from labformer.encoder import EncoderLayer
from labformer.lab.result import Result
from labformer.position import sinusoidal_encoding
from labformer.runs import PRETRAINED

PART = "Part 1 — Scaled dot-product attention"


def _rows(values: list[list[float]]) -> torch.Tensor:
    return F.normalize(torch.tensor(values, dtype=torch.float32), dim=1)


# The lab's vectors (LAB.md), every row L2-normalised.
Q1 = [[3, 3]]
Q4 = [[3, 3], [-1, 3.2], [0.2, -0.4], [0, -1]]
K = [[2, 1.5], [-4, 3], [0, 3], [-1, -4]]
V1 = [[-1, 2], [3, 4], [-2, -1], [0, 2]]
V4 = [[-1, 2], [3, 4], [2, -3], [0, 2]]


def _round(t: torch.Tensor, digits: int = 4) -> list:
    return (
        [[round(float(x), digits) for x in row] for row in t] if t.dim() == 2 else [round(float(x), digits) for x in t]
    )


def single_query() -> Result:
    """softmax(q kᵀ/√d) v for one query; arrows of q, kᵢ (labelled αᵢ), αᵢ·vᵢ and their sum."""
    q, k, v = _rows(Q1), _rows(K), _rows(V1)
    alpha = attention_weights(q, k)[0]  # (4,)
    out = scaled_dot_product_attention(q, k, v)[0]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4.3))
    origin = [0, 0]
    left.quiver(*origin, *q[0], angles="xy", scale_units="xy", scale=1, color="black", label="q")
    for i, key in enumerate(k):
        left.quiver(*origin, *key, angles="xy", scale_units="xy", scale=1, color=f"C{i}")
        left.annotate(f"k{i}: α={alpha[i]:.3f}", key.tolist(), fontsize=9, color=f"C{i}")
    left.set_title("query and keys, labelled with their weight α")
    for i, (value, a) in enumerate(zip(v, alpha)):
        right.quiver(*origin, *(a * value), angles="xy", scale_units="xy", scale=1, color=f"C{i}", label=f"α{i}·v{i}")
    right.quiver(*origin, *out, angles="xy", scale_units="xy", scale=1, color="black", label="Σ αᵢ vᵢ")
    right.legend(fontsize=8)
    right.set_title("weighted values and the output")
    for axis in (left, right):
        axis.set_xlim(-1.1, 1.1)
        axis.set_ylim(-1.1, 1.1)
        axis.set_aspect("equal")
        axis.grid(alpha=0.3)
    numbers = {"output": _round(out), "weights": _round(alpha), "weight of k0": round(float(alpha[0]), 4)}
    return Result(
        "single_query",
        "Single-query attention",
        PART,
        "The key best aligned with q (k0) gets the largest weight; the output mixes the values.",
        numbers,
        figure,
        {"output": [-0.3584, 0.4563], "weight of k0": 0.394},
    )


def batched() -> Result:
    """Four queries at once, without and with the lower-triangular (causal) mask; heat maps."""
    q, k, v = _rows(Q4)[None], _rows(K)[None], _rows(V4)[None]
    plain = scaled_dot_product_attention(q, k, v)[0]
    masked = scaled_dot_product_attention(q, k, v, causal=True)[0]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for axis, causal, title in zip(axes, (False, True), ("no mask", "causal mask")):
        weights = attention_weights(q, k, causal=causal)[0]
        image = axis.imshow(weights.numpy(), cmap="viridis", vmin=0, vmax=1)
        for i in range(4):
            for j in range(4):
                axis.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center", color="white", fontsize=8)
        axis.set_xlabel("key")
        axis.set_ylabel("query")
        axis.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.03)
    return Result(
        "batched",
        "Batched attention and the causal mask",
        PART,
        "With the mask, query t only sees keys 0..t (the first query copies v0).",
        {"output": _round(plain), "output with causal mask": _round(masked)},
        figure,
        {
            "output": [[0.1089, 0.3322], [0.2860, 0.2639], [0.0600, 0.6791], [0.0986, 0.7087]],
            "output with causal mask": [[-0.4472, 0.8944], [0.1639, 0.8393], [0.1129, 0.3967], [0.0986, 0.7087]],
        },
    )


def permutation() -> Result:
    """Permuting queries permutes outputs; permuting (k, v) pairs changes nothing; positions break both."""
    q, k, v = _rows(Q4)[None], _rows(K)[None], _rows(V4)[None]
    perm = torch.tensor([2, 0, 3, 1])
    out = scaled_dot_product_attention(q, k, v)
    pe = sinusoidal_encoding(4, 2, variant="lab")
    out_pe = scaled_dot_product_attention(q + pe, k + pe, v)
    numbers = {
        "max |out[perm] - attention(q[perm], k, v)|": float(
            (scaled_dot_product_attention(q[:, perm], k, v) - out[:, perm]).abs().max()
        ),
        "max |out - attention(q, k[perm], v[perm])|": float(
            (scaled_dot_product_attention(q, k[:, perm], v[:, perm]) - out).abs().max()
        ),
        "with positions: max |out[perm] - attention(q[perm] + pe, k + pe, v)|": float(
            (scaled_dot_product_attention(q[:, perm] + pe, k + pe, v) - out_pe[:, perm]).abs().max()
        ),
        "with positions: max |out - attention(q + pe, k[perm] + pe, v[perm])|": float(
            (scaled_dot_product_attention(q + pe, k[:, perm] + pe, v[:, perm]) - out_pe).abs().max()
        ),
    }
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.barh(range(4), [max(x, 1e-9) for x in numbers.values()], color=["C0", "C0", "C3", "C3"])
    axis.set_xscale("log")
    axis.set_yticks(
        range(4), ["queries permuted", "(k, v) permuted", "queries permuted + pos.", "(k, v) permuted + pos."]
    )
    axis.set_xlabel("max difference from the expected (log)")
    axis.set_title("attention is permutation-equivariant until positions are added")
    return Result(
        "permutation",
        "Permutations and why positions are needed",
        PART,
        "Without positions, order is invisible: the differences are float rounding; with them, large.",
        numbers,
        figure,
    )


def position_encodings() -> Result:
    """Heat maps of Vaswani's and the lab's sinusoidal tables (n = 64, d = 128) and the lab's value."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, variant in zip(axes, ("vaswani", "lab")):
        axis.imshow(sinusoidal_encoding(64, 128, variant=variant).numpy(), cmap="RdBu", aspect="auto")
        axis.set_title(f"{variant}: PE (64 positions × 128 dims)")
        axis.set_xlabel("dimension")
        axis.set_ylabel("position")
    q, k, v = _rows(Q4)[None], _rows(K)[None], _rows(V4)[None]
    pe = sinusoidal_encoding(4, 2, variant="lab")
    out = scaled_dot_product_attention(q + pe, k + pe, v)[0]
    return Result(
        "position_encodings",
        "Sinusoidal position encodings",
        PART,
        "The lab's variant gives each dimension its own frequency; Vaswani's pairs sin/cos per frequency.",
        {"output after adding the lab's encoding": _round(out)},
        figure,
        {
            "output after adding the lab's encoding": [
                [0.2614, 0.0326],
                [0.2765, 0.0179],
                [0.1590, 0.2344],
                [0.1739, 0.4437],
            ]
        },
    )


def scaling() -> Result:
    """Why scale by 1/√d: score variance grows like d, and softmax becomes one-hot without scaling."""
    torch.manual_seed(1337)
    q, k = torch.randn(32, 256), torch.randn(32, 256)
    scores = q @ k.T
    dims = [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    variance, entropy = {"raw": [], "scaled": []}, {"raw": [], "scaled": []}
    generator = torch.Generator().manual_seed(0)
    for d in dims:
        a, b = torch.randn(32, d, generator=generator), torch.randn(32, d, generator=generator)
        for kind, s in (("raw", a @ b.T), ("scaled", a @ b.T / math.sqrt(d))):
            variance[kind].append(float(s.var()))
            p = s.softmax(-1)
            entropy[kind].append(float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean()))
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind in ("raw", "scaled"):
        left.plot(dims, variance[kind], marker="o", label=f"{kind} q·k")
        right.plot(dims, entropy[kind], marker="o", label=f"{kind} q·k")
    right.axhline(math.log(32), color="grey", linestyle="--", label="uniform over 32 keys")
    left.set(xscale="log", yscale="log", xlabel="d", ylabel="variance of the scores", title="score variance")
    right.set(xscale="log", xlabel="d", ylabel="softmax entropy (nats)", title="attention entropy")
    for axis in (left, right):
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    numbers = {
        "var(q kᵀ), d = 256": round(float(scores.var()), 2),
        "var(q kᵀ / √d), d = 256": round(float((scores / 16).var()), 4),
        "entropy raw at d = 1024": round(entropy["raw"][-1], 3),
        "entropy scaled at d = 1024": round(entropy["scaled"][-1], 3),
    }
    return Result(
        "scaling",
        "Why scale by 1/√d",
        PART,
        "Unscaled scores have variance ≈ d, so the softmax collapses onto one key as d grows.",
        numbers,
        figure,
        {"var(q kᵀ), d = 256": 259.66, "var(q kᵀ / √d), d = 256": 1.014},
    )


def softmax_sharpening() -> Result:
    """The lab's example: softmax of a vector, and of the same vector times √256."""
    x = torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5])
    soft, sharp = x.softmax(-1), (x * 16).softmax(-1)
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.bar([i - 0.2 for i in range(5)], soft.numpy(), width=0.4, label="softmax(x)")
    axis.bar([i + 0.2 for i in range(5)], sharp.numpy(), width=0.4, label="softmax(16 x)")
    axis.legend()
    axis.set_title("large scores make the softmax one-hot")
    return Result(
        "softmax_sharpening",
        "Softmax sharpening",
        PART,
        "Multiplying the scores by √d = 16 turns a soft mixture into almost one token.",
        {"softmax(x)": [round(float(p), 5) for p in soft], "softmax(16 x)": [round(float(p), 5) for p in sharp]},
        figure,
        {
            "softmax(x)": [0.1925, 0.14261, 0.23512, 0.14261, 0.28717],
            "softmax(16 x)": [0.00159, 1e-05, 0.0391, 1e-05, 0.95928],
        },
    )


def message_passing() -> Result:
    """One causal attention layer's weights drawn as a graph: each token aggregates its predecessors."""
    torch.manual_seed(0)
    tokens = 6
    layer = EncoderLayer(16, 1, 32).eval()
    from labformer.attention import record_attention

    with torch.no_grad(), record_attention(layer) as maps:
        layer(torch.randn(1, tokens, 16), causal=True)
    weights = maps[0][0, 0]  # (T, T)
    figure, axis = plt.subplots(figsize=(5, 5))
    angles = torch.linspace(0, 2 * math.pi, tokens + 1)[:-1]
    xy = torch.stack([angles.cos(), angles.sin()], 1)
    for i in range(tokens):
        for j in range(tokens):
            if weights[i, j] > 0.01 and i != j:
                axis.annotate(
                    "",
                    xy=xy[i].tolist(),
                    xytext=xy[j].tolist(),
                    arrowprops=dict(arrowstyle="->", lw=4 * float(weights[i, j]), alpha=0.7, color="C0"),
                )
    axis.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=600, color="C1", zorder=3)
    for i in range(tokens):
        axis.text(*xy[i].tolist(), str(i), ha="center", va="center", zorder=4)
    axis.set_aspect("equal")
    axis.axis("off")
    axis.set_title("message passing: j → i with width α(i, j) (causal)")
    numbers = {
        "edges (weight > 0.01)": int(((weights > 0.01) & ~torch.eye(tokens, dtype=torch.bool)).sum()),
        "edges pointing to the future": int(torch.triu(weights, 1).gt(0).sum()),
    }
    return Result(
        "message_passing",
        "Attention as message passing on a graph",
        PART,
        "Each node broadcasts a key, asks with its query and aggregates values; a mask removes edges.",
        numbers,
        figure,
    )


def receptive_field(layers: int = 3, tokens: int = 16) -> Result:
    """Which inputs influence the middle output after 1..layers layers: attention vs a 3-wide conv."""
    torch.manual_seed(0)
    dim, middle = 8, tokens // 2
    attention_layers = [EncoderLayer(dim, 2, 16).eval() for _ in range(layers)]
    conv_layers = [torch.nn.Conv1d(dim, dim, 3, padding=1) for _ in range(layers)]
    reach = {"attention": [], "convolution": []}
    maps = {"attention": [], "convolution": []}
    readout = torch.randn(dim)
    for depth in range(1, layers + 1):
        for kind in ("attention", "convolution"):
            x = torch.randn(1, tokens, dim, requires_grad=True)
            h = x
            for i in range(depth):
                h = attention_layers[i](h) if kind == "attention" else conv_layers[i](h.transpose(1, 2)).transpose(1, 2)
            # A random read-out: the plain sum of a LayerNorm output is constant (zero gradient).
            (h[0, middle] @ readout).backward()
            influence = x.grad[0].norm(dim=-1)  # (tokens,)
            maps[kind].append(influence / influence.max())
            reach[kind].append(int((influence > 1e-8).sum()))
    figure, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    for axis, kind in zip(axes, ("attention", "convolution")):
        axis.imshow(torch.stack(maps[kind]).numpy(), cmap="magma", aspect="auto")
        axis.set_yticks(range(layers), [f"{d} layer{'s' if d > 1 else ''}" for d in range(1, layers + 1)])
        axis.set_xlabel("input token")
        axis.set_title(f"{kind}: influence on output token {middle}")
    numbers = {f"inputs reaching output {middle}, {kind}": reach[kind] for kind in reach}
    return Result(
        "receptive_field",
        "Receptive field: attention vs convolution",
        PART,
        "One attention layer already sees every token; a 3-wide convolution grows by 2 per layer.",
        numbers,
        figure,
    )


def self_vs_cross(run_dir: str | Path | None = None) -> Result:
    """Self-attention (queries, keys, values from x) vs cross-attention (keys and values from memory): the
    shapes on a decoder layer, then a trained encoder–decoder (``run_dir``, else the shipped dates model)
    reading dates — how much of the cross-attention of the output's month digits falls on the input's
    month word, per layer, against what spreading it evenly would give."""
    from labformer.attention import record_attention

    torch.manual_seed(0)
    layer = DecoderLayer(10, 2, 40).eval()
    x, memory = torch.randn(2, 5, 10), torch.randn(2, 7, 10)
    with torch.no_grad(), record_attention(layer) as maps:
        out = layer(x, memory, causal=True)
    head = torch.nn.Linear(10, 100)(out)
    numbers: dict[str, object] = {
        "self-attention weights shape": list(maps[0].shape),
        "cross-attention weights shape": list(maps[1].shape),
        "decoder output shape": list(out.shape),
        "after the head": list(head.shape),
    }
    trained = _month_alignment(Path(run_dir) if run_dir else PRETRAINED / "dates")
    numbers.update(trained["numbers"])
    source, written, attention = trained["example"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1, 0.7, 1.6]})
    last = -1
    panels = (
        (attention.encoder[last].mean(0), list(source), list(source), "encoder self-attention"),
        (attention.decoder[last].mean(0), ["<s>", *written], ["<s>", *written], "decoder self-attention (causal)"),
        (attention.cross[last].mean(0), list(source), [*written, "</s>"], "cross-attention"),
    )
    for axis, (weights, columns, rows, title) in zip(axes, panels):
        axis.imshow(weights.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axis.set_xticks(range(len(columns)), [c if c != " " else "␣" for c in columns], fontsize=6)
        axis.set_yticks(range(len(rows)), rows, fontsize=6)
        axis.set_title(f"{title}, last layer", fontsize=9)
    start, end = trained["span"]
    axes[2].add_patch(plt.Rectangle((start - 0.5, 4.5), end - start, 2, fill=False, edgecolor="tab:orange", lw=2))
    figure.suptitle(f"{trained['name']} reading {source!r} → {written}: the month digits (orange) read the month word")
    figure.tight_layout()
    return Result(
        "self_vs_cross",
        "Self- vs cross-attention (decoder)",
        "Extra — Decoder",
        "Queries always come from x; keys and values from x (self) or from the encoder's memory (cross). In a "
        "trained encoder–decoder the output's month digits read the input's month word.",
        numbers,
        figure,
        {"after the head": [2, 5, 100]},
    )


MONTH_EXAMPLES = (("mercredi 3 mars 2021", "2021-03-03"), ("March 3rd, 2021", "2021-03-03"),
                  ("17 juillet 1999", "1999-07-17"), ("Sunday, October 12, 1986", "1986-10-12"),
                  ("1er août 2044", "2044-08-01"), ("the 21st of June, 2012", "2012-06-21"),
                  ("5 Feb 1970", "1970-02-05"), ("12 décembre 2001", "2001-12-12"))  # fmt: skip


def _month_alignment(run_dir: Path) -> dict[str, object]:
    """For dates with a month word: the share of each decoder layer's cross-attention (mean of heads) that
    the two month digits of the ISO output (characters 6 and 7) put on the input's month word, and the
    share an even spread over the input would put there."""
    from labformer.data.dates import MONTHS_EN, MONTHS_EN_SHORT, MONTHS_FR, MONTHS_FR_SHORT
    from labformer.data.pairs import PairData, Vocabulary
    from labformer.io import read_json
    from labformer.runs import VOCAB, load_run, run_name
    from labformer.translate import attention_examples

    model, run = load_run(run_dir)
    if run["kind"] != "seq2seq" or run["train"].get("task") != "dates":
        raise ValueError(f"{run_dir} holds a {run['kind']} run; self_vs_cross reads a seq2seq run of the dates task")
    vocab = read_json(run_dir / VOCAB, "vocabulary")
    data = PairData({}, Vocabulary(vocab["source"]), Vocabulary(vocab["target"]))
    names = sorted({*MONTHS_EN, *MONTHS_EN_SHORT, *MONTHS_FR, *MONTHS_FR_SHORT}, key=len, reverse=True)
    shares, even, spans = [], [], []
    examples = attention_examples(model, data, [source for source, _ in MONTH_EXAMPLES])
    for source, _, attention in examples:
        lower = source.lower()
        name = next(n for n in names if n.lower().rstrip(".") in lower)
        start = lower.index(name.lower().rstrip("."))
        end = start + len(name.rstrip("."))
        spans.append((start, end))
        rows = attention.cross.mean(1)[:, 5:7]  # (layers, the two month digits, source)
        shares.append(rows[..., start:end].sum(-1).mean(-1))  # (layers,)
        even.append((end - start) / len(source))
    share = torch.stack(shares).mean(0)
    numbers: dict[str, object] = {
        f"layer {i + 1}: month digits' cross-attention on the month word": float(v) for i, v in enumerate(share)
    }
    numbers["the same share for attention spread evenly"] = sum(even) / len(even)
    right = sum(written == iso for (_, written, _), (_, iso) in zip(examples, MONTH_EXAMPLES))
    numbers["examples written right"] = f"{right} of {len(examples)}"
    return {"numbers": numbers, "example": examples[0], "span": spans[0], "name": run_name(run_dir)}
