"""The lab notebook is stored without outputs and opens with the install cell of labformer's notebooks.

It is run top to bottom against labformer installed from the built wheel, outside the checkout, in
tests/test_wheel.py.
"""

from pathlib import Path

import nbformat

from labformer.colab import install_cell

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lab8_transformers.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_the_first_code_cell_installs_labformer_and_sets_the_device():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].source == install_cell(mnist=True, device=True).rstrip("\n")
    later = "".join(cell.source for cell in code[1:])
    assert "device='cpu'" not in later and later.count("device=DEVICE") == 2
