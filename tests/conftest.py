"""Shared fixtures: small in-memory data sets and the shared Tiny Shakespeare copy."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from labformer.data import ImageData, ImageSplit  # noqa: E402
from labformer.training.callbacks import Callback  # noqa: E402

# Command-line flags of tiny models for end-to-end tests (seconds, not minutes).
RUNTIME_ARGS = ["--no-progress", "--device", "cpu"]
TINY_VIT_ARGS = ["--dim", "16", "--depth", "1", "--heads", "2", "--mlp-dim", "32", "--val-size", "100", *RUNTIME_ARGS]
TINY_GPT_ARGS = [
    "--block-size",
    "16",
    "--dim",
    "16",
    "--depth",
    "1",
    "--heads",
    "2",
    "--mlp-dim",
    "32",
    "--warmup-iters",
    "2",
    *RUNTIME_ARGS,
]

SHARED_SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
if SHARED_SHAKESPEARE.exists():
    os.environ.setdefault("LABFORMER_SHAKESPEARE", str(SHARED_SHAKESPEARE))


class CtrlC(Callback):
    """A Ctrl-C (KeyboardInterrupt) raised by training itself: after optimiser step ``step``, or during
    evaluation number ``evaluation`` (before its row is recorded)."""

    def __init__(self, *, step: int | None = None, evaluation: int | None = None) -> None:
        self.step, self.evaluation, self.evaluations = step, evaluation, 0

    def on_step(self, trainer) -> None:
        if trainer.progress.step == self.step:
            raise KeyboardInterrupt

    def on_evaluation(self, trainer, row) -> None:
        self.evaluations += 1
        if self.evaluations == self.evaluation:
            raise KeyboardInterrupt


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m labformer ARGS`` in a fresh process, output captured."""
    return subprocess.run([sys.executable, "-m", "labformer", *args], capture_output=True, text=True, timeout=timeout)


def synthetic_digits(n: int, seed: int) -> ImageSplit:
    """Easy 28x28 'digits': class c is a bright bar at row 2c + 4 (plus noise)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 40, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for c in range(10):
        images[labels == c, 0, 2 * c + 4 : 2 * c + 6, 4:24] = 255
    return ImageSplit(images, labels)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """Writes ``array`` (uint8) in the IDX format of MNIST's files."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist_dir(directory: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """The four MNIST IDX files holding :func:`synthetic_digits` (learnable in a few steps)."""
    directory.mkdir(parents=True, exist_ok=True)
    train, test = synthetic_digits(n_train, 0), synthetic_digits(n_test, 1)
    write_idx(directory / "train-images-idx3-ubyte", train.images[:, 0].numpy())
    write_idx(directory / "train-labels-idx1-ubyte", train.labels.numpy())
    write_idx(directory / "t10k-images-idx3-ubyte", test.images[:, 0].numpy())
    write_idx(directory / "t10k-labels-idx1-ubyte", test.labels.numpy())
    return directory


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return write_mnist_dir(tmp_path / "mnist")


@pytest.fixture
def tiny_digits() -> ImageData:
    return ImageData(
        "mnist",
        synthetic_digits(400, 0),
        synthetic_digits(100, 1),
        synthetic_digits(100, 2),
        [str(i) for i in range(10)],
        (0.1307,),
        (0.3081,),
    )


def missing(reason: str) -> None:
    """A test's input is not on this machine: skipped on a developer's machine, a failure under CI (which
    is set up to have everything: a skip there would hide that a test never ran)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI must run this test", pytrace=False)
    pytest.skip(reason)


def needed_module(name: str):  # noqa: ANN201 - the module
    """``pytest.importorskip(name)``, but a failure under CI (see :func:`missing`)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the package {name} is not installed")


@pytest.fixture
def shakespeare() -> Path:
    if not SHARED_SHAKESPEARE.exists():
        missing("the shared Tiny Shakespeare copy is not present")
    return SHARED_SHAKESPEARE


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The pretrained models behind a test client (no run directory given, none under runs/), on a server
    that lets visitors build the lab report; the client calls it as http://localhost, as a browser would."""
    lab = tmp_path_factory.mktemp("lab")
    from labformer.serve import load_app

    app, chosen = load_app([], lab_dir=lab, runs_root=lab / "no-runs", allow_build=True)
    from starlette.testclient import TestClient

    return TestClient(app, base_url="http://localhost"), chosen, lab


def script(name: str):  # noqa: ANN201 - the module
    """A module of ``scripts/`` (what the tests share with the tools that make the docs)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def live_server(served):
    """The app on a real port (uvicorn in a thread), for concurrent clients and the browser tests."""
    server, url = script("screenshots").serve_in_thread(served[0].app)
    yield url
    server.should_exit = True
