"""Figures: training curves, confusion matrices, image grids and attention maps (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

from labformer.attention import attention_rollout
from labformer.io import atomic_write
from labformer.models.vit import vit_attention_maps
from labformer.training.callbacks import Callback

if TYPE_CHECKING:
    from labformer.data import ImageData
    from labformer.models.vit import ViT
    from labformer.training.classify import Evaluation
    from labformer.training.history import History
    from labformer.training.trainer import Trainer

__all__ = [
    "ClassifierFigures", "CurveFigure", "Seq2SeqFigures", "attention_rollout", "plot_cross_attention", "plot_curves",
    "save_figure",
]  # fmt: skip


def save_figure(figure: Figure, path: Path) -> None:
    """Writes ``figure`` as PNG atomically and closes it."""
    atomic_write(Path(path), lambda p: figure.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(figure)


def plot_curves(history: History, pairs: list[tuple[str, str, str]], x: str = "epoch") -> Figure:
    """One panel per (title, train column, validation column), plus the learning rate."""
    figure, axes = plt.subplots(1, len(pairs) + 1, figsize=(4.2 * (len(pairs) + 1), 3.4))
    steps = history.column(x)
    for axis, (title, train, val) in zip(axes, pairs):
        axis.plot(steps, history.column(train), label="train", marker="o", markersize=3)
        axis.plot(steps, history.column(val), label="validation", marker="o", markersize=3)
        axis.set_title(title)
        axis.set_xlabel(x)
        axis.legend()
        axis.grid(alpha=0.3)
    axes[-1].plot(steps, history.column("lr"), color="tab:green")
    axes[-1].set_title("learning rate")
    axes[-1].set_xlabel(x)
    axes[-1].grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_confusion(confusion: Tensor, classes: list[str]) -> Figure:
    figure, axis = plt.subplots(figsize=(6, 5.5))
    image = axis.imshow(confusion.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_xticks(range(len(classes)), classes, rotation=45 if len(classes[0]) > 2 else 0)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = confusion.max().item() / 2
    for i in range(len(classes)):
        for j in range(len(classes)):
            value = int(confusion[i, j])
            if value:
                axis.text(
                    j, i, value, ha="center", va="center", fontsize=7, color="white" if value > threshold else "black"
                )
    axis.set_title(f"confusion matrix (accuracy {confusion.diag().sum() / confusion.sum():.2%})")
    return figure


def _show(axis: plt.Axes, image: Tensor) -> None:
    """uint8 (C, H, W) -> grey or colour picture."""
    picture = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    axis.imshow(picture.cpu().numpy(), cmap="gray" if image.shape[0] == 1 else None)
    axis.axis("off")


def plot_mistakes(data: ImageData, evaluation: Evaluation, count: int = 24) -> Figure:
    """The test images the model got most wrong: lowest probability given to the true class."""
    true_probability = evaluation.probabilities.gather(1, evaluation.labels[:, None])[:, 0]
    worst = true_probability.argsort()[:count]
    columns = 8
    rows = max(1, (len(worst) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, worst.tolist()):
        _show(axis, data.test.images[index])
        predicted = int(evaluation.probabilities[index].argmax())
        score = float(evaluation.probabilities[index, predicted])
        axis.set_title(
            f"true {data.classes[evaluation.labels[index]]}\npred {data.classes[predicted]} {score:.2f}",
            fontsize=8,
            color="tab:red",
        )
    figure.suptitle("worst-classified test images")
    figure.tight_layout()
    return figure


def plot_vit_attention(model: ViT, data: ImageData, count: int = 4) -> Figure:
    """For a few test images: the class token's attention over patches per layer, and the rollout."""
    device = next(model.parameters()).device
    images = data.test.images[:count]
    maps = vit_attention_maps(model, data.normalize(images.to(device)))
    side = model.config.image_size // model.config.patch_size
    offset = 1 if model.config.pool == "cls" else 0
    rollout = attention_rollout(maps)
    columns = len(maps) + 2
    figure, axes = plt.subplots(count, columns, figsize=(1.7 * columns, 1.8 * count), squeeze=False)
    for row in range(count):
        _show(axes[row, 0], images[row])
        axes[row, 0].set_title("input" if row == 0 else "", fontsize=8)
        panels = [m[row].mean(0) for m in maps] + [rollout[row]]
        for column, attention in enumerate(panels, start=1):
            # The class token's row (or the mean over tokens with mean pooling), patches only.
            query = attention[0] if offset else attention.mean(0)
            heat = query[offset:].reshape(side, side).cpu().numpy()
            axes[row, column].imshow(heat, cmap="inferno")
            axes[row, column].axis("off")
            if row == 0:
                axes[row, column].set_title("rollout" if column == columns - 1 else f"layer {column}", fontsize=8)
    figure.suptitle("class-token attention over patches (mean over heads)")
    figure.tight_layout()
    return figure


def save_classifier_figures(run_dir: Path, model: ViT, data: ImageData, history: History, test: Evaluation) -> None:
    """curves.png, confusion.png, mistakes.png and attention.png in ``run_dir``."""
    save_figure(
        plot_curves(history, [("loss", "loss", "val_loss"), ("accuracy", "accuracy", "val_accuracy")]),
        run_dir / "curves.png",
    )
    save_figure(plot_confusion(test.confusion, data.classes), run_dir / "confusion.png")
    save_figure(plot_mistakes(data, test), run_dir / "mistakes.png")
    save_figure(plot_vit_attention(model, data), run_dir / "attention.png")


class ClassifierFigures(Callback):
    """Draws curves.png, confusion.png, mistakes.png and attention.png when a classifier's training ends."""

    def on_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        task = trainer.task
        save_classifier_figures(trainer.run_dir, task.model, task.data, trainer.history, task.test)  # type: ignore[attr-defined]


class CurveFigure(Callback):
    """Draws curves.png (train and validation loss, learning rate, by step) when training ends."""

    def on_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        figure = plot_curves(trainer.history, [("loss", "train_loss", "val_loss")], x="step")
        save_figure(figure, trainer.run_dir / "curves.png")


def _labels(text: str, end: bool) -> list[str]:
    """A string's characters as tick labels (a space shown as "␣"), and the end token if ``end``."""
    return [c if c != " " else "␣" for c in text] + (["</s>"] if end else [])


def plot_cross_attention(examples: list[tuple[str, str, Any]]) -> Figure:
    """For each (source, written, :class:`~labformer.models.seq2seq.Attention`): each output character
    (rows, its end token last) over the source characters (columns), per decoder layer — the mean over
    heads, then the sharpest head of each layer (the one whose rows put most weight on one character)."""
    layers = examples[0][2].cross.shape[0]
    columns = 2 * layers
    height = sum(0.22 * (len(written) + 1) + 1.0 for _, written, _ in examples)
    figure, axes = plt.subplots(len(examples), columns, figsize=(2.8 * columns, height), squeeze=False)
    for row, (source, written, attention) in enumerate(examples):
        cross = attention.cross.float().cpu()  # (layers, heads, T, S)
        rows = _labels(written, cross.shape[2] > len(written))[: cross.shape[2]]
        for layer in range(layers):
            sharpest = int(cross[layer].max(-1).values.mean(-1).argmax())
            for column, (heat, title) in enumerate(
                (
                    (cross[layer].mean(0), f"layer {layer + 1}, mean of heads"),
                    (cross[layer, sharpest], f"layer {layer + 1}, head {sharpest + 1}"),
                )  # fmt: skip
            ):
                axis = axes[row, 2 * layer + column]
                axis.imshow(heat.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
                axis.set_xticks(range(len(source)), _labels(source, False), fontsize=6)
                axis.set_yticks(range(len(rows)), rows, fontsize=6)
                axis.set_title(title if row == 0 else "", fontsize=8)
        axes[row, 0].set_ylabel(f"{source!r}\n→ {written}", fontsize=7)
    figure.suptitle("cross-attention: each written character (rows) over the source (columns)")
    figure.tight_layout()
    return figure


class Seq2SeqFigures(Callback):
    """Draws curves.png (losses and validation exact match) and cross_attention.png (four test inputs)
    when an encoder–decoder's training ends."""

    def on_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        from labformer.translate import attention_examples

        figure = plot_curves(trainer.history, [("loss", "train_loss", "val_loss")], x="step")
        axis = figure.axes[-1].twinx()  # the learning rate's panel also shows the validation exact match
        axis.plot(trainer.history.column("step"), trainer.history.column("val_exact"), color="tab:purple")
        axis.set_ylabel("validation exact match", color="tab:purple")
        save_figure(figure, trainer.run_dir / "curves.png")
        task = trainer.task
        examples = attention_examples(task.model, task.data, [s for s, _, _ in task.data.splits["test"][:4]])  # type: ignore[attr-defined]
        save_figure(plot_cross_attention(examples), trainer.run_dir / "cross_attention.png")
