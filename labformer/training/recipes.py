"""Every training setting, declared once, and the presets: how a ViT and how the GPT are trained.

Each setting is a typed dataclass field with a help line (the command line's flags are generated from
them); a preset is data: (model settings, training settings) that the user's flags override.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from labformer.config import JsonConfig, require_non_negative, require_positive_ints, setting
from labformer.device import DEVICE_HELP, check_device_name
from labformer.models.gpt import GPTConfig
from labformer.models.seq2seq import Seq2SeqConfig
from labformer.models.vit import ViTConfig
from labformer.training.runtime import AMP_HELP, MUON_PRECISION_HELP

__all__ = [
    "GPT_PRESETS", "SEQ2SEQ_PRESETS", "VIT_PRESETS", "ClassifyConfig", "LanguageConfig", "TranslationConfig",
    "classify_config", "gpt_configs", "seq2seq_configs", "vit_configs",
]  # fmt: skip


@dataclass
class ClassifyConfig(JsonConfig):
    """How a classifier is trained; stored in ``config.json`` under "train"."""

    dataset: Literal["mnist", "cifar10", "folder"] = setting("mnist", "the data set")
    data_dir: str | None = setting(
        None, "MNIST IDX files, the CIFAR-10 archive, or (folder) a folder/.tar.gz of <class>/<image> or "
        "train|test/<class>/<image> (default: embedded MNIST / cache)",
    )  # fmt: skip
    image_size: int | None = setting(None, "folder: resize the images to this side (default: the most common)")
    strict: bool = setting(False, "folder: refuse files that are not images (default: skip and count them)")
    epochs: int = setting(10, "passes over the training set")
    batch_size: int = setting(128, "images per step (the global batch across processes)")
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(0.05, "decoupled; not on biases, norms, position and class tokens")
    warmup_epochs: float = setting(1.0, "linear warm-up length")
    schedule: Literal["cosine", "constant"] = setting("cosine", "learning rate after the warm-up")
    min_lr_ratio: float = setting(0.0, "cosine floor as a fraction of lr")
    label_smoothing: float = setting(0.0, "weight of the uniform distribution in the targets")
    grad_clip: float = setting(1.0, "max global gradient norm; 0 = off")
    augment: Literal["auto", "affine", "crop_flip", "randaugment", "none"] = setting(
        "auto", "training augmentation; auto = affine for MNIST, crop_flip for CIFAR-10; randaugment = "
        "RandAugment (torchvision's operations, computed as Pillow does) on each picture, then crop and flip",
    )  # fmt: skip
    randaugment_ops: int = setting(2, "randaugment: operations drawn for each picture")
    randaugment_magnitude: int = setting(9, "randaugment: the operations' strength, a bin of 0-30")
    augment_strength: float = setting(
        1.0, "scales the augmentation's ranges (affine: 10 degrees, 10 % shift, 10 % zoom at 1; crop: 4 pixels)"
    )
    augment_stroke: float = setting(
        0.0, "chance that a training picture's strokes are made a pixel thicker or thinner (half each), "
        "for digits that are not MNIST's pen width",
    )  # fmt: skip
    augment_elastic: float = setting(
        0.0, "elastic distortion of training pictures: a smooth random field's largest move, in pixels (0 = off)"
    )
    tta_shift: int = setting(
        0, "test-time augmentation: the test images are also scored moved this many pixels right, left, down "
        "and up, and the five predictions' probabilities averaged (0 = off; validation is never augmented)",
    )  # fmt: skip
    tta_flip: bool = setting(
        False, "test-time augmentation: the test images are also scored mirrored left-right (with tta_shift, "
        "each view), and the predictions' probabilities averaged (photos, not digits)",
    )  # fmt: skip
    val_size: float = setting(5000, "validation images carved from train: a count, or below 1 a fraction")
    train_size: int | None = setting(
        None, "use only this many training images, drawn at random (seeded by the seed; quick runs, tests)"
    )
    seed: int = setting(0, "seeds the weights, the validation split and the data order")
    device: str = setting("auto", DEVICE_HELP)
    amp: Literal["auto", "none", "bf16", "bf16-ff"] = setting("auto", AMP_HELP)
    compile: bool = setting(False, "torch.compile the model")
    eval_batch_size: int = setting(1024, "images per batch when scoring")
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0: at epoch ends only)")

    def __post_init__(self) -> None:
        check_device_name(self.device)
        require_positive_ints(epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.train_size is not None:
            require_positive_ints(train_size=self.train_size)
        if self.image_size is not None:
            require_positive_ints(image_size=self.image_size)
        if not self.val_size >= 0:
            raise ValueError(f"val_size must be a count or a fraction >= 0; got {self.val_size}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant'; got {self.schedule!r}")
        if not 0 <= self.augment_stroke <= 1:
            raise ValueError(f"augment_stroke is a chance, in [0, 1]; got {self.augment_stroke}")
        if not 0 <= self.randaugment_magnitude <= 30:
            raise ValueError(f"randaugment_magnitude is a bin of 0-30; got {self.randaugment_magnitude}")
        require_non_negative(randaugment_ops=self.randaugment_ops)
        require_non_negative(
            warmup_epochs=self.warmup_epochs,
            grad_clip=self.grad_clip,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
            augment_strength=self.augment_strength,
            augment_elastic=self.augment_elastic,
            tta_shift=self.tta_shift,
        )


# Presets: (model overrides, training overrides). "fast": 98.7 % on MNIST in about a minute of a 2-core CPU;
# "best": 99.5 % (about 40 minutes there); "lab": the lab outline's demonstration model and recipe;
# "cifar" and "lab-cifar": photos (see below).
VIT_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "fast": (
        dict(patch_size=7, dim=64, depth=3, num_heads=4, mlp_dim=128),
        dict(
            epochs=8,
            batch_size=128,
            lr=4e-3,
            weight_decay=0.05,
            warmup_epochs=0.5,
            augment="affine",
            augment_strength=0.5,  # 5 degrees, 5 % shift and zoom: a short run learns more from clearer digits
            augment_stroke=0.35,  # strokes a pixel thicker or thinner: other pens' digits (docs/performance.md)
            label_smoothing=0.1,
            tta_shift=1,  # the test digits also moved one pixel four ways: +0.3 points (docs/performance.md)
        ),
    ),
    "best": (
        # A convolutional tokenizer (3x3 convolutions, 2x2 pooling) down to a 7 x 7 grid: 49 tokens.
        dict(patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, stem="conv"),
        dict(
            epochs=50,
            batch_size=128,
            lr=2e-3,
            weight_decay=0.05,
            warmup_epochs=2,
            augment="affine",
            label_smoothing=0.1,
        ),
    ),
    # CIFAR-10 (or any folder of 32 x 32 photos) in 15 minutes of a 2-core laptop with AVX2 only: a hybrid
    # ViT, a small convnet (five 3x3 convolutions with BatchNorm) as the tokenizer down to a 4 x 4 grid of
    # 128-wide tokens, two encoder layers; 6 epochs; the test pictures also scored mirrored. Chosen by
    # benchmarks/cifar_recipes.py (docs/cifar10.md).
    "cifar": (
        dict(patch_size=8, dim=128, depth=2, num_heads=4, mlp_dim=256, stem="convnet", stem_width=32),
        dict(
            epochs=6,
            batch_size=128,
            lr=2e-3,
            weight_decay=0.05,
            warmup_epochs=1,
            augment="crop_flip",
            label_smoothing=0.1,
            tta_flip=True,
        ),
    ),
    # The lab's own CIFAR-10 model and recipe (LAB.md, Part 6), setting by setting (docs/cifar10.md): patch 8,
    # 6 layers, d = 512, 12 heads of 42 (concatenated to 504, projected to 512), a ReLU feed-forward of 4d,
    # dropout 0.1; AdamW at 1e-4 (its default weight decay, 0.01, no schedule, no clipping), 100 epochs,
    # RandAugment (2 operations at magnitude 9), then crop with padding 4 and flip; 80/20 split. For GPUs.
    "lab-cifar": (
        dict(patch_size=8, dim=512, depth=6, num_heads=12, head_dim=42, mlp_dim=2048, activation="relu", dropout=0.1),
        dict(
            epochs=100,
            batch_size=128,
            lr=1e-4,
            weight_decay=0.01,
            warmup_epochs=0,
            schedule="constant",
            augment="randaugment",
            randaugment_ops=2,
            randaugment_magnitude=9,
            grad_clip=0.0,
            val_size=0.2,
        ),
    ),
    "lab": (
        dict(patch_size=7, dim=64, depth=6, num_heads=8, mlp_dim=128),
        dict(
            epochs=25,
            batch_size=100,
            lr=3e-3,
            weight_decay=0.0,
            warmup_epochs=0,
            schedule="constant",
            augment="none",
            grad_clip=0.0,
        ),
    ),
}


def vit_configs(
    preset: str, dataset: str, model_overrides: dict, train_overrides: dict, shape: dict[str, int] | None = None
) -> tuple[ViTConfig, ClassifyConfig]:
    """The preset's configs with the dataset's image shape and the user's overrides applied.

    ``shape``: image_size, channels and num_classes of a folder data set (read from the data; MNIST's and
    CIFAR-10's are known). Where the preset's patch does not divide the images, the largest patch that
    does (and is no larger) is taken, unless the user chose one.
    """
    if preset not in VIT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(VIT_PRESETS)}")
    model_defaults, train_defaults = VIT_PRESETS[preset]
    known = {"mnist": dict(image_size=28, channels=1), "cifar10": dict(image_size=32, channels=3)}
    if dataset not in (*known, "folder"):
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {[*known, 'folder']}")
    if dataset == "folder" and shape is None:
        raise ValueError("a folder data set's image shape comes from its images: pass shape=")
    model_values = {**model_defaults, **(shape or known[dataset]), **model_overrides}
    size, patch = model_values["image_size"], model_values["patch_size"]
    if "patch_size" not in model_overrides and size % patch:
        divisors = [p for p in range(max(2, (patch + 1) // 2), 2 * patch) if size % p == 0]
        if not divisors:
            sizes = sorted({size - size % patch, size - size % patch + patch} - {0})
            raise ValueError(
                f"no patch size near the preset's {patch} divides the {size}-pixel images; pass --image-size "
                f"{' or '.join(map(str, sizes))}, or --patch-size"
            )
        model_values["patch_size"] = min(divisors, key=lambda p: (abs(p - patch), p))
    return ViTConfig(**model_values), classify_config(preset, dataset, train_overrides)


def classify_config(preset: str, dataset: str, train_overrides: dict) -> ClassifyConfig:
    """The preset's training settings for ``dataset`` with the user's overrides applied."""
    if preset not in VIT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(VIT_PRESETS)}")
    train_values = {**VIT_PRESETS[preset][1], "dataset": dataset}
    if dataset == "folder" and "val_size" not in VIT_PRESETS[preset][1]:  # folders come in every size
        train_values["val_size"] = 0.1  # a tenth of each class for validation
    return ClassifyConfig(**{**train_values, **train_overrides})


@dataclass
class LanguageConfig(JsonConfig):
    """How the GPT is trained; stored in ``config.json`` under "train"."""

    text: str | None = setting(None, "UTF-8 corpus file (default: Tiny Shakespeare; $LABFORMER_SHAKESPEARE)")
    iters: int = setting(3000, "optimisation steps")
    batch_size: int = setting(32, "windows per step (the global batch across processes)")
    lr: float = setting(1e-3, "peak learning rate")
    min_lr_ratio: float = setting(0.1, "cosine floor as a fraction of lr")
    warmup_iters: int = setting(100, "linear warm-up steps")
    weight_decay: float = setting(0.1, "decoupled; not on biases, norms and position embeddings")
    optimizer: Literal["adamw", "muon"] = setting(
        "adamw", "muon = Muon for the layers' weight matrices, AdamW for the rest (beyond the lab)"
    )
    muon_precision: Literal["auto", "float32", "bf16"] = setting("auto", MUON_PRECISION_HELP)
    grad_clip: float = setting(1.0, "max global gradient norm; 0 = off")
    eval_interval: int = setting(250, "steps between evaluations (and checkpoints)")
    eval_iters: int = setting(50, "batches per split in each evaluation")
    seed: int = setting(1337, "seeds the weights and the batches")
    device: str = setting("auto", DEVICE_HELP)
    amp: Literal["auto", "none", "bf16", "bf16-ff"] = setting("auto", AMP_HELP)
    compile: bool = setting(False, "torch.compile the model")
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0: at each evaluation only)")
    # The only setting that makes a run depend on the machine's speed; no preset uses it.
    time_limit: float | None = setting(
        None, "stop after this many seconds of training, the schedule following the clock (machine-dependent)"
    )

    def __post_init__(self) -> None:
        check_device_name(self.device)
        require_positive_ints(
            iters=self.iters, batch_size=self.batch_size, eval_interval=self.eval_interval, eval_iters=self.eval_iters
        )
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        require_non_negative(
            warmup_iters=self.warmup_iters,
            grad_clip=self.grad_clip,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
        )
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive (seconds); got {self.time_limit}")


# "cpu": a fixed number of steps (5-7 minutes of training on a 2-core CPU, by its speed); "lab": the lab's model,
# for GPUs. Presets count steps, never seconds: the same command computes the same model on every machine.
GPT_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu": (
        # 0.80 M parameters: the lab's GPT (its initialisation, a head tied to the token embedding) with
        # what won over three seeds in its ablation (docs/performance.md): rotary positions and Muon; ReLU² ties
        # with GELU and is cheaper. Zero-initialised output projections and an untied head, which had won a
        # single-seed screening, gained nothing over seeds and were taken out. 1,800 steps = 7.4 M tokens
        # (longer, it overfits Tiny Shakespeare's 1 M characters: its best validation loss comes before 2,000).
        dict(
            block_size=128,
            dim=128,
            depth=4,
            num_heads=4,
            mlp_dim=512,
            dropout=0.0,
            position="rope",
            activation="relu2",
        ),
        dict(
            iters=1800,
            batch_size=32,
            lr=3e-3,
            warmup_iters=100,
            eval_interval=250,
            eval_iters=40,
            weight_decay=0.5,
            optimizer="muon",
        ),
    ),
    "lab": (
        dict(block_size=256, dim=384, depth=6, num_heads=6, mlp_dim=1536, dropout=0.2),
        dict(iters=5000, batch_size=64, lr=1e-3, warmup_iters=200, eval_interval=250, eval_iters=100, min_lr_ratio=0.1),
    ),
}


def gpt_configs(preset: str, model_overrides: dict, train_overrides: dict) -> tuple[dict, LanguageConfig]:
    """The preset's model settings (without vocab_size, known once the corpus is read) and LanguageConfig."""
    if preset not in GPT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(GPT_PRESETS)}")
    model_defaults, train_defaults = GPT_PRESETS[preset]
    model_values = {**model_defaults, **model_overrides}
    GPTConfig(**{"vocab_size": 1, **model_values})  # validate now, before reading the corpus
    return model_values, LanguageConfig(**{**train_defaults, **train_overrides})


@dataclass
class TranslationConfig(JsonConfig):
    """How the encoder–decoder is trained; stored in ``config.json`` under "train"."""

    task: Literal["dates", "reverse", "pairs"] = setting(
        "dates", "dates: dates written many ways -> ISO; reverse: letters -> their reverse; pairs: --data-file"
    )
    data_file: str | None = setting(None, "pairs: a UTF-8 file of source<TAB>target lines")
    train_size: int = setting(100000, "dates and reverse: training pairs generated")
    val_size: int = setting(2000, "validation pairs (pairs: at most a tenth of the file)")
    test_size: int = setting(5000, "held-out test pairs (pairs: at most a tenth of the file)")
    iters: int = setting(2000, "optimisation steps")
    batch_size: int = setting(128, "pairs per step (the global batch across processes)")
    lr: float = setting(2e-3, "peak learning rate")
    min_lr_ratio: float = setting(0.05, "cosine floor as a fraction of lr")
    warmup_iters: int = setting(200, "linear warm-up steps")
    weight_decay: float = setting(0.05, "decoupled; not on biases, norms and position embeddings")
    label_smoothing: float = setting(0.0, "weight of the uniform distribution in the targets")
    grad_clip: float = setting(1.0, "max global gradient norm; 0 = off")
    eval_interval: int = setting(500, "steps between evaluations (and checkpoints)")
    eval_size: int = setting(1000, "validation pairs decoded at each evaluation (exact match)")
    seed: int = setting(0, "seeds the weights, the generated pairs and the batches")
    device: str = setting("auto", DEVICE_HELP)
    amp: Literal["auto", "none", "bf16", "bf16-ff"] = setting("auto", AMP_HELP)
    compile: bool = setting(False, "torch.compile the model")
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0: at each evaluation only)")
    time_limit: float | None = setting(
        None, "stop after this many seconds of training, the schedule following the clock (machine-dependent)"
    )

    def __post_init__(self) -> None:
        check_device_name(self.device)
        if self.task not in ("dates", "reverse", "pairs"):
            raise ValueError(f"task must be dates, reverse or pairs; got {self.task!r}")
        require_positive_ints(
            train_size=self.train_size, val_size=self.val_size, test_size=self.test_size, iters=self.iters,
            batch_size=self.batch_size, eval_interval=self.eval_interval, eval_size=self.eval_size,
        )  # fmt: skip
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        require_non_negative(
            warmup_iters=self.warmup_iters,
            grad_clip=self.grad_clip,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
        )
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive (seconds); got {self.time_limit}")


# Model settings without the vocabularies and lengths, which come from the data.
SEQ2SEQ_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "dates": (
        dict(dim=128, num_heads=4, encoder_layers=2, decoder_layers=2, mlp_dim=256, dropout=0.1),
        dict(task="dates", iters=2000, batch_size=128, lr=2e-3, warmup_iters=200, eval_interval=500),
    ),
    "reverse": (
        dict(dim=128, num_heads=4, encoder_layers=2, decoder_layers=2, mlp_dim=256, dropout=0.0),
        dict(task="reverse", iters=1500, batch_size=128, lr=2e-3, warmup_iters=200, eval_interval=500),
    ),
}


def seq2seq_configs(preset: str, model_overrides: dict, train_overrides: dict) -> tuple[dict, TranslationConfig]:
    """The preset's model settings (without vocabularies and lengths, known once the data is read) and its
    TranslationConfig, with the user's overrides."""
    if preset not in SEQ2SEQ_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(SEQ2SEQ_PRESETS)}")
    model_defaults, train_defaults = SEQ2SEQ_PRESETS[preset]
    model_values = {**model_defaults, **model_overrides}
    Seq2SeqConfig(**model_values)  # validate now, before the data is made
    return model_values, TranslationConfig(**{**train_defaults, **train_overrides})
