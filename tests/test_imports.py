"""Imports flow one way: core → data, models, runs → training → plots, lab, doctor → cli; no cycles.

Read from the source with ast (function-level imports count too), so an upward import cannot hide
inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "labformer"

# The layer of each top-level module or subpackage of labformer; a module imports its own layer or lower.
LAYERS = {
    **dict.fromkeys(
        ("attention", "position", "encoder", "decoder", "transformer", "config", "io", "device", "colab"), 0
    ),
    **dict.fromkeys(("data", "models", "runs", "translate", "__init__"), 1),  # __init__ loads runs.load lazily
    "training": 2,
    **dict.fromkeys(("plots", "lab", "doctor", "predict", "serve", "export", "exercises"), 3),
    **dict.fromkeys(("cli", "__main__"), 4),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def type_checking_blocks(tree: ast.Module) -> set[ast.AST]:
    """The statements under ``if TYPE_CHECKING:`` (read by type checkers, never run)."""
    blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    return {child for block in blocks for statement in block.body for child in ast.walk(statement)}


def imports(path: Path, *, typing: bool = True) -> set[str]:
    """The labformer modules ``path`` imports (``from labformer import io`` counts as labformer.io);
    with ``typing=False`` without those under ``if TYPE_CHECKING:``."""
    found = set()
    tree = ast.parse(path.read_text())
    skipped = set() if typing else type_checking_blocks(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("labformer")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labformer"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = any(
                    (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(suffix).exists()
                    for suffix in (".py", "")
                )
                found.add(candidate if is_module else node.module)
    return found


def graph(*, typing: bool = True) -> dict[str, set[str]]:
    return {module_name(path): imports(path, typing=typing) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    names = {module.split(".")[1] if "." in module else "__init__" for module in graph()}
    assert sorted(names - set(LAYERS)) == []  # a new module must be placed in a layer
    assert "labformer.training.muon" in graph() and {"training", "cli"} <= names  # the walk found the package


def test_imports_flow_one_way():
    upward = {
        (module, target) for module, targets in graph().items() for target in targets if layer(target) > layer(module)
    }
    assert not upward, f"upward imports: {sorted(upward)}"


def test_serving_never_reaches_into_training():
    """The web page answers with models and runs; training code stays out of a server's process."""
    reached = {(m, t) for m, targets in graph().items() if m.startswith("labformer.serve") for t in targets}
    assert not [pair for pair in reached if pair[1].startswith("labformer.training")]


def test_no_import_cycles():
    """At run time: a Trainer's callbacks may name the Trainer in their annotations (TYPE_CHECKING)."""
    edges = {module: targets - {module} for module, targets in graph(typing=False).items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*path, module, target])}")
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_the_core_imports_no_training_files_or_figures():
    code = (
        "import sys, labformer; labformer.MultiHeadAttention(8, 2); "
        "print(sorted(m for m in sys.modules if m.startswith(('labformer.training', 'labformer.runs', "
        "'safetensors', 'matplotlib', 'labformer.cli'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
