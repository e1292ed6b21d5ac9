"""The lab notebook executes from top to bottom (stored without outputs)."""

from pathlib import Path

import nbformat
from conftest import needed_module
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lab8_transformers.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_notebook_executes(tmp_path):
    needed_module("mnist")  # the ViT cell uses the embedded MNIST
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "(lab: 259.66)" in outputs and "test accuracy" in outputs
