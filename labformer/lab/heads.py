"""Part 2 of the lab as an experiment: multi-head attention as separate channels of communication."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor

from labformer.attention import record_attention
from labformer.lab.result import Result
from labformer.models.gpt import GPT, GPTConfig

PART = "Part 2 — Multi-head attention"


def _quick_model(steps: int = 300, seed: int = 0) -> tuple[GPT, Tensor, float]:
    """A 1-layer, 4-head causal model trained for a few seconds on "output 4·(x[t-1] mod 4) + x[t-3] mod 4".

    Solving it needs two channels (one looking 1 back, one looking 3 back): the heads specialise.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=16, block_size=16, dim=32, depth=1, num_heads=4, mlp_dim=64, tie_weights=False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)

    def batch(n: int) -> tuple[Tensor, Tensor]:
        x = torch.randint(0, 16, (n, 16), generator=generator)
        y = 4 * (torch.roll(x, 1, 1) % 4) + torch.roll(x, 3, 1) % 4
        return x, y

    for _ in range(steps):
        x, y = batch(64)
        loss = F.cross_entropy(model(x)[:, 3:].flatten(0, 1), y[:, 3:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = batch(256)
    with torch.no_grad():
        accuracy = float((model(x)[:, 3:].argmax(-1) == y[:, 3:]).float().mean())
    return model, x[:1], accuracy


def _from_run(run_dir: Path) -> tuple[torch.nn.Module, Tensor, str]:
    from labformer.runs import SAMPLE, VOCAB, load_run

    model, run = load_run(run_dir)
    if run["kind"] == "gpt":
        from labformer.data.text import CharTokenizer
        from labformer.io import read_json

        tokenizer = CharTokenizer(read_json(run_dir / VOCAB, "vocabulary"))
        sample = (run_dir / SAMPLE).read_text()[:48] if (run_dir / SAMPLE).exists() else tokenizer.chars[0]
        return model, tokenizer.encode(sample)[None], f"GPT run {run_dir.name}"
    from labformer.data import load_run_images

    data = load_run_images(run["train"])
    return model, data.normalize(data.test.images[:1]), f"ViT run {run_dir.name}"


def heads_as_channels(run_dir: str | Path | None = None) -> Result:
    """Per-head attention maps of the first layer of a trained model (a run directory, or a model trained
    here in a few seconds on a task that needs two look-back channels)."""
    numbers: dict[str, object] = {}
    if run_dir is not None:
        model, inputs, source = _from_run(Path(run_dir))
    else:
        model, inputs, accuracy = _quick_model()
        source = "1-layer, 4-head model trained on 4·(x[t-1] mod 4) + x[t-3] mod 4"
        numbers["task accuracy"] = round(accuracy, 4)
    with torch.no_grad(), record_attention(model) as maps:
        model(inputs)
    first = maps[0][0]  # (H, T, S)
    heads = first.shape[0]
    figure, axes = plt.subplots(1, heads, figsize=(2.6 * heads, 2.8), squeeze=False)
    for h in range(heads):
        axes[0, h].imshow(first[h].cpu().numpy(), cmap="viridis")
        axes[0, h].set_title(f"head {h}", fontsize=9)
        axes[0, h].set_xticks([])
        axes[0, h].set_yticks([])
    figure.suptitle(f"layer 1, one attention map per head — {source}", fontsize=9)
    if run_dir is None:
        # Where each head looks, on average: its mean offset (query position - key position).
        t = torch.arange(first.shape[-1])
        offsets = (first * (t[:, None] - t[None, :]).float()).sum(-1)[:, 3:].mean(-1)
        numbers["mean look-back per head (tokens)"] = [round(float(o), 2) for o in offsets]
    numbers["heads"] = heads
    return Result(
        "heads_as_channels",
        "Multi-head attention as separate channels",
        PART,
        "Different heads attend to different places: separate channels of communication.",
        numbers,
        figure,
    )
