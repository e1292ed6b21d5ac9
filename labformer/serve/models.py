"""The models behind ``labformer serve``: a digit classifier (ViT), a character GPT and an encoder–decoder,
each loaded from a run directory, with what the pages show — predictions with every head's attention,
streamed text and the causal attention of a text, and an output with its three kinds of attention.

One lock per model: attention is recorded by hooks on the shared model, so a recording forward pass
must not interleave with another request's forward pass.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from labformer import io, runs
from labformer.attention import attention_rollout, record_attention
from labformer.data.dates import FIRST_YEAR, LAST_YEAR
from labformer.data.text import CharTokenizer
from labformer.models.vit import ViT
from labformer.predict import is_blank, load_image
from labformer.runs import PRETRAINED, SHIPPED, run_name

__all__ = ["PRETRAINED", "DigitModel", "Seq2SeqModel", "TextModel", "find_runs"]

MAX_TOKENS = 2000
MAX_BEAM = 16
NAMES = {"vit": "digits", "gpt": "text", "seq2seq": "seq2seq"}  # kind -> what the pages call it


def find_runs(run_dirs: list[str | Path], runs_root: Path = Path("runs")) -> dict[str, Path]:
    """The run directory to serve per kind ("vit", "gpt", "seq2seq"): those given (the last of each kind
    wins), else the newest run of that kind under ``runs_root`` that has weights, else the pretrained one."""
    chosen: dict[str, Path] = {}
    for run_dir in map(runs.run_path, run_dirs):
        kind = runs.read_run_config(run_dir)["kind"]
        if kind not in SHIPPED:
            raise ValueError(f"{run_dir} holds a {kind} run; serve shows vit, gpt and seq2seq runs")
        if not (run_dir / runs.MODEL).is_file():
            raise FileNotFoundError(f"{run_dir} has no {runs.MODEL} yet (train it first)")
        chosen[kind] = run_dir
    if run_dirs:
        return chosen
    candidates = (
        sorted(runs_root.glob(f"*/{runs.MODEL}"), key=lambda p: p.stat().st_mtime) if runs_root.is_dir() else []
    )
    for weights in candidates:  # oldest first: the newest of each kind wins
        try:
            chosen[runs.read_run_config(weights.parent)["kind"]] = weights.parent
        except (OSError, ValueError):
            continue  # not a run directory labformer can read: skip it
    for kind, name in SHIPPED.items():
        if (PRETRAINED / name / runs.MODEL).is_file():
            chosen.setdefault(kind, PRETRAINED / name)
    return chosen


def _metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / runs.METRICS
    return io.read_json(path, "metrics") if path.is_file() else {}


DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "folder": "its test images"}


def reached(metrics: dict[str, Any], run: dict[str, Any]) -> dict[str, Any] | None:
    """What a served model reaches, as data a page words in its language: {"measure": "exact" | "accuracy" |
    "loss", "value", "on": the task or data set, or for a loss "full" (the whole validation split) or
    "batches"}; None when the run was not evaluated. The shipped models' numbers are those of their float16
    weights."""
    numbers = {**metrics, **metrics.get("shipped", {})}
    train = run.get("train", {})
    if run["kind"] == "seq2seq":
        found = ("exact", numbers.get("test_exact"), train.get("task"))
    elif run["kind"] == "vit":
        found = ("accuracy", numbers.get("test_accuracy"), train.get("dataset"))
    else:
        full = "val_loss_full" in numbers
        found = ("loss", numbers.get("val_loss_full" if full else "val_loss"), "full" if full else "batches")
    measure, value, on = found
    return None if value is None else {"measure": measure, "value": value, "on": on}


def run_summary(metrics: dict[str, Any], run: dict[str, Any]) -> str:
    """:func:`reached` in English: "98.70 % test accuracy on MNIST" or "validation loss 1.452 nats/character
    (the whole validation split)"."""
    found = reached(metrics, run)
    if found is None:
        return "not evaluated yet"
    value, on = found["value"], found["on"]
    if found["measure"] == "exact":
        task = {"dates": "dates", "reverse": "reversed strings"}.get(on, "its pairs")
        return f"{value * 100:.2f} % exact on held-out {task}"
    if found["measure"] == "accuracy":
        return f"{value * 100:.2f} % test accuracy on {DATASETS.get(on, 'its test images')}"
    split = "the whole validation split" if on == "full" else "the validation batches"
    return f"validation loss {value:.3f} nats/character ({split})"


def _described(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    """What /api/health says of every served model: its name in words (never a path), what it reaches (in
    English and as data), its metrics, which shipped model it is (else null) and, for the dates task, the
    first and last year it learnt."""
    metrics = _metrics(run_dir)
    facts = {
        "name": run_name(run_dir),
        "summary": run_summary(metrics, run),
        "reached": reached(metrics, run),
        "metrics": metrics,
        "shipped": runs.shipped_name(run_dir),
    }
    if run.get("train", {}).get("task") == "dates":
        facts["years"] = [FIRST_YEAR, LAST_YEAR]
    return facts


class DigitModel:
    """A ViT run that classifies digits (or any images): prediction, probabilities, attention."""

    def __init__(self, run_dir: Path) -> None:
        model, run = runs.load_run(run_dir)
        if model.config.backend != "labformer":  # same weights; labformer's layers expose their attention
            config = model.config.to_dict() | {"backend": "labformer"}
            labformer_model = runs.build_model("vit", config)
            labformer_model.load_state_dict(model.state_dict())
            model = labformer_model.eval()
        self.model: ViT = model
        self.run, self.run_dir, self.lock = run, Path(run_dir), threading.Lock()
        self.answered = 0  # predictions made, for /api/health
        self.mean = torch.tensor(run["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(run["std"]).view(1, -1, 1, 1)
        self.grid = model.config.image_size // model.config.patch_size

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return _described(self.run_dir, self.run) | {
            "dataset": self.run["train"].get("dataset"),
            "classes": self.run["classes"],
            "layers": config.depth,
            "heads": config.num_heads,
            "grid": self.grid,
            "image_size": config.image_size,
        }

    @torch.no_grad()
    def predict(self, image: bytes) -> dict[str, Any]:
        """PNG/JPEG bytes -> prediction, probabilities, the input as the model sees it (uint8 rows) and
        the class token's attention per layer and head over the patch grid, plus the rollout. A digit
        picture with no ink gives ``"empty": true`` and ``"prediction": null`` rather than a confident digit."""
        config = self.model.config
        mnist_style = self.run["train"]["dataset"] == "mnist"
        pixels = load_image(image, channels=config.channels, size=config.image_size, mnist_style=mnist_style)
        empty = mnist_style and is_blank(pixels)  # nothing stands out from the paper: no digit to read
        x = (pixels[None].float() / 255 - self.mean) / self.std
        with self.lock, record_attention(self.model) as maps:
            probabilities = self.model(x).softmax(-1)[0]
            self.answered += 1
        patches = self.grid * self.grid
        if config.pool == "cls":  # the class token's row, over the patch tokens
            cls = [layer[0, :, 0, 1:] for layer in maps]
            rollout = attention_rollout(maps)[0, 0, 1:]
        else:  # mean pooling: how much the patches, on average, attend to each patch
            cls = [layer[0].mean(1)[:, -patches:] for layer in maps]
            rollout = attention_rollout(maps)[0].mean(0)[-patches:]
        classes = self.run["classes"]
        return {
            "prediction": None if empty else classes[int(probabilities.argmax())],
            "empty": empty,
            "probabilities": [round(float(p), 6) for p in probabilities],
            "classes": classes,
            "input": pixels.permute(1, 2, 0).squeeze(-1).tolist(),
            "attention": {
                "layers": len(maps),
                "heads": config.num_heads,
                "grid": self.grid,
                "cls": [[[round(float(v), 6) for v in head] for head in layer] for layer in cls],
                "rollout": [round(float(v), 6) for v in rollout / rollout.sum()],
            },
        }


class TextModel:
    """A GPT run: streamed sampling and the causal attention of a text."""

    def __init__(self, run_dir: Path) -> None:
        self.model, self.run = runs.load_run(run_dir)
        self.run_dir, self.lock = Path(run_dir), threading.Lock()
        self.generated = 0  # characters sampled, for /api/health (and to see a stream stop)
        self.tokenizer = CharTokenizer(io.read_json(Path(run_dir) / runs.VOCAB, "vocabulary"))

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return _described(self.run_dir, self.run) | {
            "layers": config.depth,
            "heads": config.num_heads,
            "block_size": config.block_size,
            "vocabulary": "".join(self.tokenizer.chars),
        }

    def encode(self, text: str, what: str) -> torch.Tensor:
        """``text`` as ids (1, T); a ValueError naming the characters the model never saw."""
        unknown = sorted(set(text) - set(self.tokenizer.chars))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise ValueError(f"the {what} holds characters this model never saw: {shown}")
        return self.tokenizer.encode(text)[None]

    def stream(
        self, prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int | None
    ) -> Iterator[str]:
        """The generated characters, one at a time (the prompt is not repeated)."""
        ids = self.encode(prompt, "prompt")  # raises before the stream starts
        generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(62))
        sampled = self.model.stream(ids, tokens, temperature, top_k, generator=generator)

        def characters() -> Iterator[str]:
            while True:
                with self.lock:
                    token = next(sampled, None)
                    self.generated += token is not None
                if token is None:
                    return
                yield self.tokenizer.decode(token[0].tolist())

        return characters()

    @torch.no_grad()
    def attention(self, text: str) -> dict[str, Any]:
        """Per layer and head, the causal attention (T, T) over the last ``block_size`` characters."""
        block = self.model.config.block_size
        offset = max(0, len(text) - block)
        ids = self.encode(text[offset:], "text")
        with self.lock, record_attention(self.model) as maps:
            self.model(ids)
        return {
            "tokens": list(text[offset:]),
            "offset": offset,
            "layers": len(maps),
            "heads": self.model.config.num_heads,
            "attention": [[[[round(float(v), 5) for v in row] for row in head] for head in layer[0]] for layer in maps],
        }


class Seq2SeqModel:
    """An encoder–decoder run: an input's output (greedy or beam search), the probability of each written
    character, and its three kinds of attention — the encoder's self-attention, the decoder's causal
    self-attention and the cross-attention."""

    def __init__(self, run_dir: Path) -> None:
        from labformer.data.pairs import PairData, Vocabulary

        self.model, self.run = runs.load_run(run_dir)
        self.run_dir, self.lock = Path(run_dir), threading.Lock()
        self.answered = 0  # translations made, for /api/health
        vocab = io.read_json(Path(run_dir) / runs.VOCAB, "vocabulary")
        self.data = PairData({}, Vocabulary(vocab["source"]), Vocabulary(vocab["target"]))
        self.examples = [source for source, _, _ in _examples(self.run["train"].get("task"))]  # once, not per request

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return _described(self.run_dir, self.run) | {
            "task": self.run["train"].get("task"),
            "encoder_layers": config.encoder_layers,
            "decoder_layers": config.decoder_layers,
            "heads": config.num_heads,
            "max_source": config.max_source,
            "examples": self.examples,
        }

    @torch.no_grad()
    def translate(self, text: str, beam: int = 1) -> dict[str, Any]:
        """The output of ``text`` with per-step probabilities and attention (layers × heads × rows × columns)."""
        from labformer.translate import UNSURE_BELOW, attention_examples, reading

        if len(text) > self.model.config.max_source:
            raise ValueError(
                f"text has {len(text)} characters; this model reads at most {self.model.config.max_source}"
            )
        with self.lock:
            ((source, written, attention),) = attention_examples(self.model, self.data, [text], beam=beam)
            self.answered += 1
        answer = reading(source, written, attention, self.run["train"].get("task"))
        calendar = (
            None if answer.calendar is None else dataclasses.asdict(answer.calendar) | {"real": answer.calendar.real}
        )
        rounded = lambda t: [[[[round(float(v), 5) for v in row] for row in head] for head in layer] for layer in t]  # noqa: E731
        end = attention.cross.shape[2] > len(written)  # the last row wrote the end token
        return {
            "text": text,
            "output": written,
            "source_tokens": list(text),
            "output_tokens": [*written, *(["</s>"] if end else [])],
            "decoder_tokens": ["<s>", *written][: attention.cross.shape[2]],
            "probabilities": [round(float(p), 6) for p in attention.probabilities],
            "unknown_characters": self.data.source_vocab.unknown(text),
            "least_probability": round(answer.least_probability, 6),
            "unsure": answer.unsure,
            "unsure_below": UNSURE_BELOW,
            "calendar": calendar,
            "year_in_input": answer.year_in_input,
            "warnings": answer.warnings(),
            "beam": beam,
            "attention": {
                "encoder": rounded(attention.encoder),
                "decoder": rounded(attention.decoder),
                "cross": rounded(attention.cross),
            },
        }


def _examples(task: str | None) -> list[tuple[str, str, str]]:
    """A few inputs to try: held-out test pairs of a generated task."""
    if task not in ("dates", "reverse"):
        return []
    from labformer.data.pairs import load_pairs

    return load_pairs(task, train_size=1, val_size=1, test_size=6, seed=0).splits["test"]
