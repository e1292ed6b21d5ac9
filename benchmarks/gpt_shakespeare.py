"""labformer's character GPT against a plain single-file reference GPT of identical size.

Run: ``python benchmarks/gpt_shakespeare.py [--budget SECONDS] [--text FILE]``.

The reference is written the obvious way (nanoGPT style: one fused qkv Linear, F.scaled_dot_product_attention
with is_causal, GELU MLP, pre-norm, tied head) below, in this file. Both train on Tiny Shakespeare
with the same data and schedule. Printed: training tokens/s of the same architecture and optimiser
(labformer's GPT as the lab builds it, AdamW); validation loss after the same wall-clock budget of the
default ``cpu`` preset (its model and optimiser, beyond the lab) against the reference with AdamW; and
generation tokens/s with and without labformer's KV cache (500 new tokens, block 256), with the lab's
absolute positions (the window jumps) and with rotary ones (the window slides).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from report import Report
from timing import train_steps_per_second
from torch import nn

from labformer.data.text import load_text
from labformer.models.gpt import GPT, GPTConfig
from labformer.training.language import LanguageTask, gpt_optimizer
from labformer.training.optim import Schedule
from labformer.training.recipes import GPT_PRESETS, LanguageConfig
from labformer.training.trainer import Trainer


class ReferenceBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp(self.ln_2(x))


class ReferenceGPT(nn.Module):
    def __init__(self, vocab: int, block: int, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block, dim)
        self.blocks = nn.ModuleList(ReferenceBlock(dim, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def trainer(model: nn.Module, data, config: LanguageConfig, block: int, run_dir: str) -> Trainer:
    """labformer's Trainer (what ``labformer train gpt`` runs) around any next-token model."""
    task = LanguageTask(model, data, config, block, torch.device("cpu"))
    optimizer = gpt_optimizer(model, config, torch.device("cpu"))
    schedule = Schedule(config.lr, config.iters, config.warmup_iters, "cosine", config.min_lr_ratio)
    return Trainer(
        task, optimizer, schedule, run_dir=Path(run_dir), device=torch.device("cpu"), grad_clip=config.grad_clip,
        time_limit=config.time_limit, compile=config.compile, amp=config.amp,
    )  # fmt: skip


def train_for(model: nn.Module, data, config: LanguageConfig, block: int) -> dict:
    """Trains for ``config.time_limit`` seconds (cosine over ``config.iters`` steps, or the clock if sooner);
    returns tokens/s and the validation loss over ``eval_iters`` batches at the end."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as run_dir:
        run = trainer(model, data, config, block, run_dir)
        progress = run.fit()
        val = run.history.rows[-1]["val_loss"]
    tokens = progress.step * config.batch_size * block
    return {"steps": progress.step, "tokens_per_second": tokens / progress.train_seconds, "val_loss": val}


def throughput(model: nn.Module, data, config: LanguageConfig, block: int, steps: int = 30) -> float:
    """Training tokens/s through the Trainer (the first 3 steps and the final evaluation not counted)."""
    short = dataclasses.replace(config, iters=steps + 3, eval_interval=steps + 3, eval_iters=1, time_limit=None)
    with tempfile.TemporaryDirectory() as run_dir:
        return config.batch_size * block * train_steps_per_second(trainer(model, data, short, block, run_dir))


def generation_row(model: GPT, position: str) -> tuple[list[str], float, float, bool]:
    """Tokens/s of 500 new tokens from a 1-token prompt with and without the cache; 3 interleaved rounds
    (cached, uncached, ...): batch-1 decoding is memory-bound, and a shared machine's memory bandwidth
    drifts; the medians and the median of the per-round ratios are reported. Returns the table row, the
    cached tokens/s, the ratio and whether both gave the same tokens."""
    prompt = torch.zeros(1, 1, dtype=torch.long)
    speeds: dict[bool, list[float]] = {True: [], False: []}
    tokens: dict[bool, torch.Tensor] = {}
    for round_ in range(5):
        for use_cache in (True, False):
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(round_)
            tokens[use_cache] = model.generate(prompt, 500, use_cache=use_cache, generator=generator)
            speeds[use_cache].append(500 / (time.perf_counter() - started))
    same = torch.equal(tokens[True], tokens[False])
    cached, uncached = statistics.median(speeds[True]), statistics.median(speeds[False])
    ratio = statistics.median(a / b for a, b in zip(speeds[True], speeds[False]))
    window = "the window jumps" if position != "rope" else "rope: the window slides"
    row = [
        f"generation tokens/s (lab model, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, "
        f"block 256, batch 1, 500 new; median of 5; {window})",
        f"{cached:,.0f} with KV cache",
        f"{uncached:,.0f} without",
        f"{ratio:.1f}x",
        f"≥ 10x and ≥ 250/s; same tokens: {'yes' if same else 'NO'}",
    ]
    return row, cached, ratio, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", help="corpus (default: Tiny Shakespeare)")
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model (default 120)")
    args = parser.parse_args()
    preset_model, preset_train = GPT_PRESETS["cpu"]
    dim, depth, heads = preset_model["dim"], preset_model["depth"], preset_model["num_heads"]
    block, batch, lr = preset_model["block_size"], preset_train["batch_size"], preset_train["lr"]
    preset = LanguageConfig(**{**preset_train, "seed": 0, "eval_iters": 50, "device": "cpu", "amp": "none"})
    recipe = dataclasses.replace(preset, optimizer="adamw")  # the lab's optimiser, for both
    data = load_text(args.text, block_size=256)
    vocab = len(data.tokenizer)
    rows = []
    report = Report("gpt_shakespeare")

    def models(beyond_the_lab: bool = False):
        torch.manual_seed(0)
        lab = GPTConfig(vocab_size=vocab, block_size=block, dim=dim, depth=depth, num_heads=heads, mlp_dim=4 * dim)
        ours = GPT(GPTConfig(vocab_size=vocab, **preset_model) if beyond_the_lab else lab)
        torch.manual_seed(0)
        return ours, ReferenceGPT(vocab, block, dim, depth, heads)

    ours, reference = models()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    params = sum(p.numel() for p in ours.parameters())
    # Throughput: 10 interleaved rounds of 15 steps (a shared machine's speed drifts within minutes; short
    # alternating rounds put both models in the same minutes), medians, and the median per-round ratio.
    rates = {"labformer": [], "reference": []}
    for _ in range(10):
        rates["labformer"].append(throughput(ours, data, recipe, block, steps=15))
        rates["reference"].append(throughput(reference, data, recipe, block, steps=15))
    ours_rate, reference_rate = statistics.median(rates["labformer"]), statistics.median(rates["reference"])
    ratio = statistics.median(a / b for a, b in zip(rates["labformer"], rates["reference"]))
    rows.append(
        [
            "training tokens/s",
            f"{ours_rate:,.0f}",
            f"{reference_rate:,.0f}",
            f"{ratio:.2f} (rounds {min(a / b for a, b in zip(rates['labformer'], rates['reference'])):.2f}–"
            f"{max(a / b for a, b in zip(rates['labformer'], rates['reference'])):.2f})",
            "≥ 1.10",
        ]
    )
    report.target("training tokens/s ≥ 1.10× the plain reference's (same run)", f"{ratio:.2f}×", ratio >= 1.10,
                  f"by {1.10 - ratio:.2f}")  # fmt: skip
    ours, reference = models(beyond_the_lab=True)
    steps_hint = int(args.budget * reference_rate / (batch * block))
    timed = dataclasses.replace(recipe, iters=steps_hint, eval_interval=steps_hint, time_limit=args.budget)
    ours_run = train_for(ours, data, dataclasses.replace(timed, optimizer=preset.optimizer), block)
    reference_run = train_for(reference, data, timed, block)
    rows.append(
        [
            f"val loss after {args.budget:.0f}s (labformer: the cpu preset's model and optimiser)",
            f"{ours_run['val_loss']:.3f} ({ours_run['steps']} steps)",
            f"{reference_run['val_loss']:.3f} ({reference_run['steps']} steps)",
            "",
            "lower is better",
        ]
    )

    # Generation at block 256 with the lab's model (preset "lab": 6 layers, 6 heads, d = 384): 500 new
    # tokens from a 1-token prompt, batch 1; with the lab's learned positions, then with rotary ones.
    lab_model = {k: v for k, v in GPT_PRESETS["lab"][0].items() if k != "dropout"}
    for position in ("learned", "rope"):
        torch.manual_seed(0)
        generator_model = GPT(GPTConfig(vocab_size=vocab, **{**lab_model, "position": position})).eval()
        row, cached, speedup, same = generation_row(generator_model, position)
        rows.append(row)
        met = speedup >= 10 and cached >= 250 and same
        gaps = [f"{10 - speedup:.1f}× short of 10×"] if speedup < 10 else []
        gaps += [f"{250 - cached:.0f} tokens/s short"] if cached < 250 else []
        gaps += ["the tokens differ"] if not same else []
        report.target(f"cached generation ≥ 10× uncached and ≥ 250 tokens/s ({position} positions)",
                      f"{speedup:.1f}×, {cached:,.0f} tokens/s", met, "; ".join(gaps))  # fmt: skip
    report.table(
        f"GPT of {params:,} parameters (dim {dim}, depth {depth}, heads {heads}, block {block}), batch {batch}, "
        f"AdamW {lr}, float32.",
        ["measure", "labformer", "reference", "ratio", "target"],
        rows,
    )
    report.save()
    if not math.isfinite(ours_run["val_loss"]):
        raise SystemExit("labformer's loss diverged")


if __name__ == "__main__":
    main()
