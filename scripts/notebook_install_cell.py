"""Writes labformer's install cell (labformer.colab.install_cell) as the first code cell of the lab notebook.

    python scripts/notebook_install_cell.py

tests/test_notebook.py fails when the notebook's cell and the package's differ.
"""

from __future__ import annotations

import json
from pathlib import Path

from labformer.colab import install_cell

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lab8_transformers.ipynb"


def main() -> None:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    first["source"] = install_cell(mnist=True, device=True).rstrip("\n").splitlines(keepends=True)
    first.setdefault("id", "install-labformer")  # nbformat 4.5 gives every cell an id
    NOTEBOOK.write_text(json.dumps(notebook, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{NOTEBOOK.name}: the first code cell is labformer's install cell")


if __name__ == "__main__":
    main()
