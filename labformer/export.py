"""Exporting a trained ViT to ONNX, verified with ONNX Runtime before the file is kept.

``labformer export RUN_DIR --onnx FILE [--attention]``: input ``images`` (batch, C, H, W) as the model
sees them (normalised with the run's mean and std), output ``logits`` (batch, classes) and, with
``--attention``, ``attention`` (batch, layers, heads, tokens, tokens). The batch size is dynamic. Needs
``pip install onnx onnxruntime onnxscript`` (the extra ``labformer[onnx]``).
"""

from __future__ import annotations

import contextlib
import io as text_io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from labformer.attention import record_attention
from labformer.io import atomic_write
from labformer.models.vit import ViT

__all__ = ["export_onnx"]

TOLERANCE = 1e-4  # max abs difference of the logits (float32) between ONNX Runtime and PyTorch


class _WithAttention(nn.Module):
    """The ViT's logits and every layer's attention weights, stacked (B, L, H, T, T)."""

    def __init__(self, model: ViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        with record_attention(self.model) as maps:
            logits = self.model(images)
        return logits, torch.stack(maps, 1)


def _require_onnx() -> Any:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"ONNX export needs onnx, onnxruntime and onnxscript ({error.name} is missing): "
            "pip install onnx onnxruntime onnxscript"
        ) from None
    import onnxruntime

    return onnxruntime


def export_onnx(model: ViT, path: str | Path, *, attention: bool = False, check_batch: int = 3) -> dict[str, Any]:
    """Writes ``model`` as ONNX to ``path`` (atomically) after checking it with ONNX Runtime on a batch
    of ``check_batch`` random images against PyTorch; returns what was checked.

    Raises ValueError when the runtimes disagree by more than ``TOLERANCE`` (nothing is written then).
    """
    if not isinstance(model, ViT):
        raise ValueError(f"ONNX export takes a ViT run; got a {type(model).__name__}")
    runtime = _require_onnx()
    config = model.config
    model = model.eval()
    if config.backend != "labformer" and attention:
        raise ValueError("--attention needs a model with backend 'labformer' (torch's layers hide their weights)")
    module: nn.Module = _WithAttention(model) if attention else model
    names = ["logits", "attention"] if attention else ["logits"]
    example = torch.randn(2, config.channels, config.image_size, config.image_size)
    images = torch.randn(check_batch, config.channels, config.image_size, config.image_size)

    def write(target: Path) -> None:
        quiet = contextlib.redirect_stdout(text_io.StringIO())
        with quiet, warnings.catch_warnings(), _silence("torch.onnx"), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(target), input_names=["images"], output_names=names, dynamo=True,
                dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}}, verbose=False,
                external_data=False,  # one self-contained file (weights inside), renamed atomically
            )  # fmt: skip
        session = runtime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            expected = module(images)
        expected = expected if isinstance(expected, tuple) else (expected,)
        differences = [float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected)]
        checked["max_abs_difference"] = dict(zip(names, differences))
        if max(differences) > TOLERANCE:
            raise ValueError(
                f"ONNX Runtime and PyTorch disagree by {max(differences):.2e} (> {TOLERANCE}); not written"
            )

    checked: dict[str, Any] = {"path": str(path), "outputs": names, "check_batch": check_batch}
    atomic_write(Path(path), write)
    checked["bytes"] = Path(path).stat().st_size
    return checked


@contextlib.contextmanager
def _silence(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
