"""Training the encoder–decoder: random batches of source → target pairs, teacher forcing, periodic
evaluation (validation loss, and exact match of greedy decoding on part of the validation split).

At the end the best weights (lowest validation loss) write the whole held-out test split: exact match,
character accuracy, both by group (a date's language and format) and by language, and the commonest
mistakes — in ``metrics.json``, ``mistakes.md`` and ``cross_attention.png``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labformer import io, runs
from labformer.data.pairs import PAD, PairData, load_pairs
from labformer.models.seq2seq import Seq2Seq, Seq2SeqConfig
from labformer.training.callbacks import Callback
from labformer.training.distributed import Cluster, run_on_cluster
from labformer.training.optim import Schedule, build_optimizer
from labformer.training.progress import Progress
from labformer.training.recipes import TranslationConfig
from labformer.training.runtime import autocast, removed_if_empty_on_failure
from labformer.training.task import RandomBatches
from labformer.training.trainer import Trainer, open_run
from labformer.translate import translate_texts

__all__ = ["MISTAKES", "Scores", "TranslationTask", "open_translation_run", "run_data", "score_split", "train_seq2seq"]

MISTAKES = "mistakes.md"  # the commonest errors on the test split


def open_translation_run(run_dir: str | Path, device: str = "cpu", *, splits: bool = False) -> tuple[Seq2Seq, PairData]:
    """The model of a seq2seq run (eval mode) and its vocabularies as a :class:`PairData`; with ``splits``,
    also the run's splits, regenerated from its config (seeded: the pairs it trained and was tested on)."""
    from labformer.data.pairs import Vocabulary

    run_dir = runs.run_path(run_dir)
    model, run = runs.load_run(run_dir, device=device)
    if run["kind"] != "seq2seq":
        raise ValueError(f"{run_dir} holds a {run['kind']} model; this needs a seq2seq run")
    vocab = io.read_json(Path(run_dir) / runs.VOCAB, "vocabulary")
    if splits:
        config = TranslationConfig.from_dict({**run["train"], "device": "cpu"})  # the data only
        return model, run_data(config, (vocab["source"], vocab["target"]))
    return model, PairData({}, Vocabulary(vocab["source"]), Vocabulary(vocab["target"]))


def character_accuracy(output: str, target: str) -> float:
    """The share of positions, over the longer of the two, where output and target hold the same character."""
    longest = max(len(output), len(target), 1)
    return sum(a == b for a, b in zip(output, target)) / longest


@dataclass
class Scores:
    """Exact match and character accuracy of a split, overall and by group and language."""

    exact: float
    characters: float
    by_group: dict[str, dict[str, float]]
    by_language: dict[str, dict[str, float]]
    mistakes: list[tuple[str, str, str, str]]  # (source, target, output, group) of every wrong answer


def score_split(triples: list[tuple[str, str, str]], outputs: list[str]) -> Scores:
    """Scores ``outputs`` against the (source, target, group) ``triples``. A group "language: format" also
    counts for its language (the part before the colon)."""
    tallies: dict[str, dict[str, defaultdict[str, float]]] = {"group": {}, "language": {}}
    exact = characters = 0.0
    mistakes = []
    for (source, target, group), output in zip(triples, outputs):
        right, share = float(output == target), character_accuracy(output, target)
        exact, characters = exact + right, characters + share
        if not right:
            mistakes.append((source, target, output, group))
        for kind, key in (("group", group), ("language", group.split(":")[0])):
            tally = tallies[kind].setdefault(key, defaultdict(float))
            tally["count"] += 1
            tally["exact"] += right
            tally["characters"] += share

    def means(kind: str) -> dict[str, dict[str, float]]:
        return {
            key: {"exact": t["exact"] / t["count"], "characters": t["characters"] / t["count"], "count": t["count"]}
            for key, t in sorted(tallies[kind].items())
        }

    count = max(len(triples), 1)
    return Scores(exact / count, characters / count, means("group"), means("language"), mistakes)


def what_differs(target: str, output: str) -> str:
    """Where an answer went wrong: for an ISO date target, its parts ("day", "month and year", "length");
    else the 1-based positions that differ."""
    if len(output) != len(target):
        return "length"
    wrong = [i for i, (a, b) in enumerate(zip(target, output)) if a != b]
    if len(target) == 10 and target[4] == target[7] == "-":
        parts = [name for name, span in (("year", range(0, 4)), ("month", range(5, 7)), ("day", range(8, 10)))
                 if any(i in span for i in wrong)]  # fmt: skip
        return " and ".join(parts) or "a separator"
    return "characters " + ", ".join(str(i + 1) for i in wrong)


def mistakes_table(scores: Scores, limit: int = 20) -> str:
    """Markdown: the commonest kinds of error (the format and what part of the answer went wrong), then
    examples."""
    kinds: Counter[tuple[str, str]] = Counter(
        (group, what_differs(target, output)) for _, target, output, group in scores.mistakes
    )
    lines = [
        f"# Mistakes on the test split: {len(scores.mistakes)}",
        "",
        "| format | what differs | count |",
        "|---|---|---|",
        *(f"| {group} | {what} | {n} |" for (group, what), n in kinds.most_common(limit)),
        "",
        "| source | expected | written | format |",
        "|---|---|---|---|",
        *(
            "| " + " | ".join(cell.replace("|", "\\|") for cell in mistake) + " |"
            for mistake in scores.mistakes[:limit]
        ),
    ]
    return "\n".join(lines) + "\n"


class TranslationTask(RandomBatches):
    """Source → target pairs for the :class:`~labformer.training.trainer.Trainer`: each step draws random
    pairs of the training split (one seeded stream); every ``eval_interval`` steps the validation loss
    (teacher forcing) and the exact match of greedy decoding on ``eval_size`` validation pairs; the lowest
    validation loss wins."""

    kind, monitor, maximize, sums, unit = "seq2seq", "val_loss", False, (), "step"
    label = "train seq2seq"
    digits = 4

    def __init__(self, model: Seq2Seq, data: PairData, config: TranslationConfig, device: torch.device) -> None:
        self.model, self.data, self.config, self.device = model, data, config, device
        self.batch_size, self.total_steps, self.eval_every = config.batch_size, config.iters, config.eval_interval
        self.source, self.target = data.tensors("train")
        self.val_source, self.val_target = data.tensors("val")
        self.batches = torch.Generator().manual_seed(config.seed)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        rows = torch.randint(len(self.source), (self.batch_size,), generator=self.batches)
        source, target = self.source[rows], self.target[rows]
        source = source[:, : int((source != PAD).sum(1).max())]  # no column of padding only
        target = target[:, : int((target != PAD).sum(1).max())]
        return source.to(self.device), target.to(self.device)

    def loss(self, model: nn.Module, source: Tensor, target: Tensor) -> tuple[Tensor, list[Tensor]]:
        return pair_loss(model, source, target, self.config.label_smoothing), []

    @torch.no_grad()
    def evaluate(self, progress: Progress) -> dict[str, float]:
        self.model.eval()
        total = count = 0.0
        for start in range(0, len(self.val_source), 512):
            source = self.val_source[start : start + 512].to(self.device)
            target = self.val_target[start : start + 512].to(self.device)
            with autocast(self.device, self.config.amp):
                total += pair_loss(self.model, source, target).item() * len(source)
            count += len(source)
        pairs = self.data.splits["val"][: self.config.eval_size]
        outputs = translate_texts(self.model, self.data, [s for s, _, _ in pairs])
        self.model.train()
        return {
            "step": progress.step,
            "train_loss": progress.running["loss_sum"] / max(progress.running["count"], 1),
            "val_loss": total / count,
            "val_exact": score_split(pairs, outputs).exact,
            "lr": progress.lr,
            "seconds": progress.train_seconds,
        }

    def describe(self, row: dict[str, float]) -> str:
        return (
            f"step {row['step']}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
            f"val exact match {row['val_exact']:.2%}"
        )

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        best = min(trainer.history.rows, key=lambda row: row["val_loss"])
        test = self.data.splits["test"]
        scores = score_split(test, translate_texts(self.model, self.data, [s for s, _, _ in test]))
        if trainer.cluster.is_main:
            io.atomic_write(trainer.run_dir / MISTAKES, lambda p: p.write_text(mistakes_table(scores)))
        seconds = trainer.progress.train_seconds
        return {
            "test_exact": scores.exact,
            "test_characters": scores.characters,
            "test_count": len(test),
            "test_by_language": scores.by_language,
            "test_by_format": scores.by_group,
            "val_loss": best["val_loss"],
            "val_exact": best["val_exact"],
            "best_step": best["step"],
            "iters": trainer.progress.step,
            "train_seconds": seconds,
            "pairs_per_second": self.batch_size * trainer.progress.step / seconds if seconds else 0.0,
        }

    def summary(self, metrics: dict[str, Any]) -> str:
        return (
            f"test exact match {metrics['test_exact']:.2%} (characters {metrics['test_characters']:.2%}) on "
            f"{metrics['test_count']:,} held-out pairs after {metrics['iters']} steps, "
            f"{metrics['train_seconds']:.0f}s of training"
        )


def pair_loss(model: nn.Module, source: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Teacher forcing: the cross-entropy of the model's next-token logits for ``target`` (B, T) (start token
    first, padding after the end) given ``source`` (B, S), averaged over each pair's tokens (padding not
    scored), then over the pairs. Every pair weighs the same, so the mean of equal slices of a batch is the
    batch's mean: data-parallel processes train exactly what one process does."""
    logits = model(source, target[:, :-1])
    labels = target[:, 1:]
    losses = F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=PAD, label_smoothing=label_smoothing,
        reduction="none",
    ).view_as(labels)  # fmt: skip
    counts = (labels != PAD).sum(1).clamp(min=1)
    return (losses.sum(1) / counts).mean()


def run_data(
    config: TranslationConfig,
    vocabularies: tuple[list[str], list[str]] | None = None,
    model_values: dict[str, Any] | None = None,
) -> PairData:
    """The splits of a run's task, from its training config (the same pairs every time: they are seeded);
    a pairs file is held to the lengths ``model_values`` fixes, if any (max_target counts the end token)."""
    limits = model_values or {}
    return load_pairs(
        config.task, train_size=config.train_size, val_size=config.val_size, test_size=config.test_size,
        seed=config.seed, data_file=config.data_file, vocabularies=vocabularies,
        max_source=limits.get("max_source"),
        max_target=limits["max_target"] - 1 if "max_target" in limits else None,
    )  # fmt: skip


def train_seq2seq(
    model_values: dict,
    config: TranslationConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    progress: bool = True,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
) -> dict[str, Any]:
    """Trains an encoder–decoder; returns the metrics written to ``metrics.json``. The vocabularies and the
    longest source and target come from the data unless ``model_values`` fixes the lengths."""

    def train(cluster: Cluster, device: torch.device) -> dict[str, Any]:
        nonlocal config, preset
        run_dir, saved, config = open_run(cluster, device, "seq2seq", config, out=out, resume=resume, name="seq2seq")
        with removed_if_empty_on_failure(run_dir):
            if saved is not None:
                vocab = io.read_json(run_dir / runs.VOCAB, "vocabulary")
                data = run_data(config, (vocab["source"], vocab["target"]))
                model_config, preset = Seq2SeqConfig.from_dict(saved["model"]), saved.get("preset")
            else:
                data = run_data(config, model_values=model_values)
                longest_source, longest_target = data.longest()
                values = {"max_source": longest_source, "max_target": longest_target + 1, **model_values}
                model_config = Seq2SeqConfig(
                    **values, source_vocab=len(data.source_vocab), target_vocab=len(data.target_vocab)
                )
                check_lengths(data, model_config)
            torch.manual_seed(config.seed)
            task = TranslationTask(Seq2Seq(model_config).to(device), data, config, device)
            optimizer = build_optimizer(task.model, config.lr, config.weight_decay, (0.9, 0.98))
            schedule = Schedule(config.lr, config.iters, config.warmup_iters, "cosine", config.min_lr_ratio)
            trainer = Trainer.for_config(
                task, optimizer, schedule, config, run_dir=run_dir, device=device, cluster=cluster, progress=progress,
                callbacks=callbacks,
            )  # fmt: skip
            if saved is not None:
                trainer.restore()
            elif cluster.is_main:
                record = {"kind": "seq2seq", "preset": preset, "model": model_config.to_dict(), "train": asdict(config)}
                io.write_json(run_dir / runs.CONFIG, record)
                vocab = {"source": data.source_vocab.chars, "target": data.target_vocab.chars}
                io.write_json(run_dir / runs.VOCAB, vocab)
            trainer.fit()
            return trainer.finish()

    return run_on_cluster(config.device, train)


def check_lengths(data: PairData, config: Seq2SeqConfig) -> None:
    """One error naming the first pair longer than the model takes (a --max-source or --max-target given)."""
    for split, triples in data.splits.items():
        for number, (source, target, _) in enumerate(triples, 1):
            if len(source) > config.max_source or len(target) + 1 > config.max_target:
                side, size, limit = (
                    ("source", len(source), config.max_source) if len(source) > config.max_source
                    else ("target", len(target) + 1, config.max_target)
                )  # fmt: skip
                raise ValueError(
                    f"pair {number} of the {split} split has a {side} of {size} positions; max_{side} is {limit}"
                )
