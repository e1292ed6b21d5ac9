"""What RandAugment costs a training step on the CPU: milliseconds per batch of 128 CIFAR-sized pictures for
each augmentation, beside a training step (forward, backward, AdamW) of the ``cifar`` and ``lab-cifar``
models on the same batch, timed in turn in one process.

Run: ``python benchmarks/randaugment.py [--batch-size 128] [--repeats 15]``. The pictures are random uint8
ones (RandAugment's cost hardly depends on what they show); each augmentation draws from its own seeded
generator, as a training epoch does.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from report import Report
from timing import interleaved_medians

from labformer.data import Augment
from labformer.data.randaugment import RandAugment
from labformer.models.vit import ViT
from labformer.training.recipes import vit_configs


def training_step(preset: str, images: torch.Tensor, labels: torch.Tensor):
    """One optimiser step of ``preset``'s model on CIFAR-10-shaped pictures (float, normalised)."""
    model_config, _ = vit_configs(preset, "cifar10", {}, {})
    model = ViT(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    pictures = torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (args.batch_size,), generator=generator)
    normalised = (pictures.float() / 255 - 0.5) / 0.25
    crop_flip, randaugment = (
        Augment.scaled("crop_flip", 1.0),
        Augment.scaled("randaugment", 1.0, randaugment=RandAugment()),
    )
    jobs = {
        "crop and flip (the `cifar` preset's)": lambda: crop_flip(pictures, generator),
        "RandAugment (2 operations, magnitude 9), then crop and flip (`lab-cifar`'s)": lambda: randaugment(
            pictures, generator
        ),
        "a `cifar` training step": training_step("cifar", normalised, labels),
        "a `lab-cifar` training step": training_step("lab-cifar", normalised, labels),
    }
    seconds = dict(zip(jobs, interleaved_medians(list(jobs.values()), repeats=args.repeats, warmup=3)))
    names = list(jobs)
    rows = []
    for name, value in seconds.items():
        shares = [f"{value / seconds[step]:.1%}" for step in names[2:]] if name in names[:2] else ["", ""]
        rows.append([name, f"{value * 1e3:.1f}", *shares])
    report = Report("randaugment")
    report.table(
        f"Milliseconds per batch of {args.batch_size} pictures of 32 x 32 (median of {args.repeats}, timed in turn), "
        "and each augmentation as a share of a training step.",
        ["work", "ms per batch", "share of a `cifar` step", "share of a `lab-cifar` step"],
        rows,
    )
    added = seconds[names[1]] - seconds[names[0]]
    report.note(
        f"RandAugment adds {added * 1e3:.1f} ms per batch to crop and flip: "
        f"{added / seconds[names[3]]:.1%} of a `lab-cifar` step and {added / seconds[names[2]]:.1%} of a `cifar` "
        "step on this CPU."
    )
    report.save()


if __name__ == "__main__":
    main()
