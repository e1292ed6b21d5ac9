"""labformer's MultiHeadAttention and EncoderLayer against torch.nn's, on this machine.

Run: ``python benchmarks/attention.py [--quick]``. Prints one Markdown table of median times and
ratios (labformer / torch; below 1 = labformer faster). Batch 256, float32, tokens 17 / 65 / 197,
dim 64 / 192, heads 4 / 8. Modes: "train" = forward + backward in train mode; "train fwd" = forward
only in train mode; "eval" = no-grad eval forward (torch's encoder layer then runs its C++ fast
path); "record" = labformer in eval with ``record_attention`` on, against torch's eval time.
"""

from __future__ import annotations

import argparse
import itertools

import torch
from report import Report
from timing import interleaved_medians
from torch import nn

from labformer import EncoderLayer, MultiHeadAttention, record_attention

TARGETS = {("MultiHeadAttention", "train"): 0.90, ("MultiHeadAttention", "train fwd"): 0.90,
           ("EncoderLayer", "train"): 1.00, ("EncoderLayer", "train fwd"): 1.00,
           ("MultiHeadAttention", "eval"): 1.10, ("EncoderLayer", "eval"): 1.10,
           ("MultiHeadAttention", "record"): 1.5, ("EncoderLayer", "record"): 1.5}  # fmt: skip


def build(kind: str, dim: int, heads: int) -> tuple[nn.Module, nn.Module]:
    if kind == "MultiHeadAttention":
        ours: nn.Module = MultiHeadAttention(dim, heads)
        theirs: nn.Module = nn.MultiheadAttention(dim, heads, batch_first=True)
    else:
        ours = EncoderLayer(dim, heads, 2 * dim, dropout=0.0, norm_first=True)
        theirs = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.MultiheadAttention):
        return module(x, x, x, need_weights=False)[0]
    return module(x)


def run_mode(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, mode: str, repeats: int) -> tuple[float, float]:
    train = mode.startswith("train")
    ours.train(train)
    theirs.train(train)
    x = x.requires_grad_(mode == "train")

    def step(module: nn.Module) -> None:
        if mode == "train":
            call(module, x).sum().backward()
            return
        with torch.set_grad_enabled(mode == "train fwd"):
            call(module, x)

    def recording() -> None:
        with torch.no_grad(), record_attention(ours):
            call(ours, x)

    ours_fn = recording if mode == "record" else (lambda: step(ours))
    return tuple(interleaved_medians([ours_fn, lambda: step(theirs)], repeats=repeats))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes (a smoke run)")
    args = parser.parse_args()
    torch.manual_seed(0)
    batch, repeats = (32, 3) if args.quick else (256, 7)
    rows, misses = [], []
    sizes = itertools.product([17, 65, 197], [(64, 4), (192, 8), (64, 8), (192, 4)])
    for kind, (tokens, (dim, heads)) in itertools.product(["MultiHeadAttention", "EncoderLayer"], sizes):
        ours, theirs = build(kind, dim, heads)
        x = torch.randn(batch, tokens, dim)
        for mode in ["train", "train fwd", "eval", "record"]:
            ours_s, theirs_s = run_mode(ours, theirs, x, mode, repeats)
            ratio = ours_s / theirs_s
            target = TARGETS[(kind, mode)]
            ok = ratio <= target
            rows.append([kind, tokens, dim, heads, mode, f"{ours_s * 1e3:.2f}", f"{theirs_s * 1e3:.2f}",
                         f"{ratio:.2f}", f"≤ {target:.2f}", "yes" if ok else "NO"])  # fmt: skip
            if not ok:
                misses.append(rows[-1])
            print(" ".join(map(str, rows[-1])), flush=True)
    report = Report("attention")
    headers = ["module", "tokens", "dim", "heads", "mode", "labformer ms", "torch ms", "ratio", "target", "met"]
    report.table(f"Median milliseconds per call, batch {batch}, float32; ratio = labformer / torch.", headers, rows)
    met = len(rows) - len(misses)
    worst = max(misses, key=lambda r: float(r[7]) / float(r[8].removeprefix("≤ ")), default=None)
    gap = (
        f"{len(misses)} rows over; the furthest: {worst[0]} {worst[4]}, {worst[1]} tokens, dim {worst[2]}, "
        f"{worst[3]} heads at {worst[7]} ({worst[8]})"
        if worst
        else ""
    )
    report.target("every row within its ratio to torch.nn", f"{met} of {len(rows)} rows", not misses, gap)
    report.save()


if __name__ == "__main__":
    main()
