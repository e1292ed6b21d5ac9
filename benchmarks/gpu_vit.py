"""ViT presets on a CUDA GPU, exactly as ``labformer train vit`` trains them, with the test set scored after
every epoch (not counted as training time): images/s, seconds to 98 % and 99 % test accuracy, final accuracy.

Run: ``python benchmarks/gpu_vit.py [--presets fast,best] [--amp bf16] [--compile] [--out results.json]``
(``benchmarks/gpu_vit.sh`` runs it with the GPU settings). Training seconds include torch.compile's
compilation, which happens during the first steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from timing import print_table

from labformer.training.callbacks import Callback
from labformer.training.classify import load_data, train_classifier
from labformer.training.recipes import classify_config, vit_configs
from labformer.training.trainer import Trainer

TARGETS = {"mnist": (0.98, 0.99, 0.995), "cifar10": (0.70, 0.75, 0.7935), "folder": (0.70, 0.75, 0.7935)}


class ScoreTest(Callback):
    """Scores the test set after each epoch; notes the training seconds at which each target is first met."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, targets) -> None:
        self.images, self.labels, self.targets = images, labels, targets
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.reached: dict[float, tuple[float, int]] = {}
        self.curve: list[tuple[int, float, float]] = []

    @torch.no_grad()
    def on_evaluation(self, trainer: Trainer, row: dict) -> None:
        model = trainer.task.model
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        correct = 0
        for start in range(0, len(self.labels), 2000):
            images = self.images[start : start + 2000].to(device).float() / 255.0
            logits = model((images - self.mean.to(device)) / self.std.to(device))
            correct += (logits.argmax(-1).cpu() == self.labels[start : start + 2000]).sum().item()
        model.train(was_training)
        accuracy, seconds, epoch = correct / len(self.labels), trainer.progress.train_seconds, int(row["epoch"])
        self.curve.append((epoch, seconds, accuracy))
        print(f"  epoch {epoch}: {seconds:.1f}s, test accuracy {accuracy:.2%}", flush=True)
        for target in self.targets:
            if accuracy >= target and target not in self.reached:
                self.reached[target] = (seconds, epoch)


def run_preset(
    preset: str, dataset: str, data_dir: str | None, amp: str, compile: bool, device: str, settings: dict | None = None
) -> dict:
    overrides = dict(device=device, amp=amp, compile=compile, **(settings or {}))
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    config = classify_config(preset, dataset, overrides)
    data = load_data(config)
    shape = dict(image_size=data.image_size, channels=data.channels, num_classes=len(data.classes))
    model_config, config = vit_configs(preset, dataset, {}, overrides, shape if dataset == "folder" else None)
    score = ScoreTest(data.test.images, data.test.labels, data.mean, data.std, TARGETS[dataset])
    print(f"{preset} on {dataset}: {model_config.to_dict()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        metrics = train_classifier(
            model_config, config, out=out, preset=preset, data=data, progress=False, callbacks=[score]
        )
    return {
        "preset": preset,
        "dataset": dataset,
        "settings": settings or {},
        "metrics": metrics,
        "reached": {str(t): v for t, v in score.reached.items()},
        "curve": score.curve,
        "wall_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="fast,best", help="comma-separated preset[:dataset] (default fast,best)")
    parser.add_argument("--data-dir", help="the data of presets run on cifar10 or folder (e.g. the CIFAR-10 JPEG tar)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SETTING=VALUE",
        help="a training setting changed from the preset's, e.g. augment=crop_flip (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    if args.device == "cuda":
        print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__, flush=True)
    results = []
    for item in args.presets.split(","):
        preset, _, dataset = item.partition(":")
        dataset = dataset or "mnist"
        data_dir = args.data_dir if dataset != "mnist" else None
        results.append(run_preset(preset, dataset, data_dir, args.amp, args.compile, args.device, settings))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))
    rows = []
    for result in results:
        metrics, targets = result["metrics"], TARGETS[result["dataset"]]
        reached = [result["reached"].get(str(t)) for t in targets]
        rows.append(
            [
                f"{result['preset']} ({result['dataset']})"
                + "".join(f", {k}={v}" for k, v in result.get("settings", {}).items()),
                metrics["epochs"],
                f"{metrics['images_per_second']:,.0f}",
                *[f"{r[0]:.1f} s (epoch {r[1]})" if r else "not reached" for r in reached],
                f"{metrics['test_accuracy']:.2%}",
                f"{metrics['train_seconds']:.1f}",
            ]
        )
    print_table(
        ["preset", "epochs", "train img/s", "to 98 % / 70 %", "to 99 % / 75 %", "to 99.5 % / 79.35 %", "test acc"]
        + ["train s"],
        rows,
    )


if __name__ == "__main__":
    main()
