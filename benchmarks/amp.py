"""bf16 autocast against float32 on this machine: where is the crossover, and what do the models gain?

Run: ``python benchmarks/amp.py``. Prints (1) a float32 vs bf16 matrix-product sweep over widths,
(2) training throughput of the ViT ``fast`` model and the GPT ``cpu`` model in float32 and under
bf16 autocast, with the loss each reaches after the same number of steps on the same batches, and
(3) what ``--amp auto`` decides here (native bf16 detected from the CPU flags, then a probe).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from timing import median_seconds, print_table

from labformer.models.gpt import GPT, GPTConfig
from labformer.models.vit import ViT, ViTConfig
from labformer.training.optim import build_optimizer
from labformer.training.runtime import cpu_has_native_bf16, resolve_amp


def matmul_sweep() -> list[list[str]]:
    rows = []
    for dim in (64, 128, 256, 512, 1024):
        x, w = torch.randn(4096, dim), torch.randn(dim, dim)

        def run(bf16: bool, x=x, w=w) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                x @ w

        fp32 = median_seconds(lambda: run(False), repeats=5)
        bf16 = median_seconds(lambda: run(True), repeats=3, warmup=1)
        flops = 2 * 4096 * dim * dim
        rows.append([str(dim), f"{flops / fp32 / 1e9:.1f}", f"{flops / bf16 / 1e9:.1f}", f"{fp32 / bf16:.2f}x"])
    return rows


def train(model: torch.nn.Module, batches: list, loss_fn, amp: bool) -> tuple[float, float]:
    """(seconds per step, final loss) over the given batches."""
    torch.manual_seed(0)
    optimizer = build_optimizer(model, 1e-3, 0.05)
    started, loss = None, torch.tensor(0.0)
    for i, (x, y) in enumerate(batches):
        if i == 3:
            started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / (len(batches) - 3), loss.item()


def main() -> None:
    print(
        f"native bf16 (AMX-BF16 or AVX512-BF16 in /proc/cpuinfo): {cpu_has_native_bf16()}; "
        f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}\n"
    )
    print_table(["width", "float32 GFLOP/s", "bf16 GFLOP/s", "bf16 speed-up"], matmul_sweep())
    generator = torch.Generator().manual_seed(0)
    # 13 steps each (3 warm-up): bf16 without hardware support is slow.
    vit_batches = [
        (torch.randn(128, 1, 28, 28, generator=generator), torch.randint(0, 10, (128,), generator=generator))
        for _ in range(13)
    ]
    gpt_batches = [(torch.randint(0, 65, (32, 128), generator=generator),) * 2 for _ in range(13)]
    rows = []
    for name, build, batches, loss_fn, unit in (
        (
            "ViT fast (dim 64)",
            lambda: ViT(ViTConfig(patch_size=7, dim=64, depth=3, num_heads=4, mlp_dim=128)),
            vit_batches,
            F.cross_entropy,
            128,
        ),
        (
            "GPT cpu (dim 96)",
            lambda: GPT(GPTConfig(vocab_size=65, block_size=128, dim=96, depth=4, num_heads=4, mlp_dim=384)),
            gpt_batches,
            lambda logits, y: F.cross_entropy(logits.flatten(0, 1), torch.roll(y, -1, 1).flatten()),
            32 * 128,
        ),
    ):
        results = {}
        for amp in (False, True):
            torch.manual_seed(0)
            results[amp] = train(build(), batches, loss_fn, amp)
        speedup = results[False][0] / results[True][0]
        rows.append(
            [
                name,
                f"{unit / results[False][0]:,.0f}",
                f"{unit / results[True][0]:,.0f}",
                f"{speedup:.2f}x",
                f"{results[False][1]:.4f}",
                f"{results[True][1]:.4f}",
            ]
        )
        print(rows[-1], flush=True)
    print()
    print_table(
        [
            "model",
            "float32 items/s",
            "bf16 items/s",
            "bf16 speed-up",
            "float32 loss (13 steps)",
            "bf16 loss (13 steps)",
        ],
        rows,
    )
    print(
        f"\n--amp auto here: ViT dim 64 -> {resolve_amp('auto', torch.device('cpu'), 64)}, "
        f"GPT dim 96 -> {resolve_amp('auto', torch.device('cpu'), 96)}, "
        f"dim 1024 -> {resolve_amp('auto', torch.device('cpu'), 1024)}"
    )


if __name__ == "__main__":
    main()
