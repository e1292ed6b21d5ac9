"""labformer as a user gets it: the built wheel, installed by the notebooks' first cell into a fresh virtual
environment, and used from a folder outside the checkout, so that nothing is imported from the source tree.

The module builds the wheel (or takes ``$LABFORMER_WHEEL``, the one `.ci/run` built), makes the environment
once (PyTorch as installed here, Jupyter's kernel; no labformer), runs the first cell of the notebooks
(:func:`labformer.colab.install_cell`) there as Colab would, then the smoke set: ``--version``, ``doctor``,
``serve`` (health, each page, a prediction, a translation), a one-epoch ``train``, a few ``train gpt`` steps,
``lab all``, ``exercises`` and ``check``, the shipped models by name, and both notebooks top to bottom.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch
from conftest import SHARED_SHAKESPEARE, TINY_GPT_ARGS, TINY_VIT_ARGS
from PIL import Image, ImageDraw

from labformer.colab import install_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "lab8_transformers.ipynb"
RUN_NOTEBOOK = """\
import sys

import nbformat
from nbclient import NotebookClient

notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=sys.argv[3] == "errors",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(notebook, sys.argv[1])
"""


@dataclass
class User:
    """A fresh environment with labformer installed from the wheel, and a working folder outside the checkout."""

    venv: Path
    work: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]], cwd=self.work, env=self.env, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def execute(self, notebook: Path, *, errors: bool = False) -> nbformat.NotebookNode:
        """Runs ``notebook`` top to bottom in this environment's kernel (in place) and returns it."""
        script = self.work / "run_notebook.py"
        script.write_text(RUN_NOTEBOOK)
        self.run("python", str(script), str(notebook), str(self.work), "errors" if errors else "", timeout=900)
        return nbformat.read(notebook, as_version=4)


def outputs(cell: nbformat.NotebookNode) -> str:
    return "".join(
        o.get("text", "") + "".join(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", [])
    )


def draw_one(path: Path) -> None:
    """A one: a thick vertical stroke, dark on a white picture four times MNIST's size."""
    picture = Image.new("L", (112, 112), 255)
    ImageDraw.Draw(picture).line([(56, 14), (56, 98)], fill=0, width=12)
    picture.save(path)


def errors(cell: nbformat.NotebookNode) -> list[str]:
    return [o["ename"] for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if os.environ.get("LABFORMER_WHEEL"):
        return Path(os.environ["LABFORMER_WHEEL"])
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> tuple[User, str]:
    """The fresh environment after the notebooks' first cell installed labformer there from the wheel;
    and what that cell printed."""
    home = tmp_path_factory.mktemp("user")
    venv, work = home / "venv", home / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LABFORMER_"))}
    env |= {"LABFORMER_CACHE": str(home / "cache"), "MPLBACKEND": "Agg", "HOME": str(home)}
    if SHARED_SHAKESPEARE.exists():  # CI has no internet beyond the package registries
        env["LABFORMER_SHAKESPEARE"] = str(SHARED_SHAKESPEARE)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    user = User(venv, work, env)
    user.run(
        "python", "-m", "pip", "install", "-q", f"torch=={torch.__version__}", "ipykernel", "nbclient", timeout=900
    )
    assert user.run("python", "-c", "import labformer", check=False).returncode != 0  # not importable yet
    cell = install_cell(mnist=True, device=True, source=str(wheel))
    printed = user.run("python", "-c", cell, timeout=900).stdout
    return user, printed


def test_the_wheel_holds_the_package_its_pages_and_models_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"labformer", wheel.name.split("-py3")[0] + ".dist-info"}
    for kind in ("dates", "digits", "text"):
        assert f"labformer/serve/pretrained/{kind}/model.safetensors" in names
    for page in ("layout", "digits", "text", "seq2seq", "lab"):
        assert f"labformer/serve/templates/{page}.html" in names
    assert {"labformer/serve/i18n/en.json", "labformer/serve/i18n/fr.json"} <= set(names)
    assert {"labformer/exercises/messages/en.json", "labformer/exercises/messages/fr.json"} <= set(names)
    assert not [name for name in names if any(part in name for part in ("tests/", "runs/", "benchmarks/"))]
    assert wheel.stat().st_size < 10e6


def test_the_first_cell_installs_labformer_from_the_wheel_and_names_the_device(installed, wheel):
    user, printed = installed
    assert f"installing labformer from {wheel} ..." in printed and "computing on cpu (no GPU" in printed
    where = user.run("python", "-c", "import labformer, mnist; print(labformer.__file__)").stdout.strip()
    assert Path(where).is_relative_to(user.venv) and not Path(where).is_relative_to(ROOT)
    again = user.run("python", "-c", install_cell(mnist=True, device=True)).stdout  # installed: nothing to do
    assert "installing" not in again and f"torch {torch.__version__}" in again


def test_version_and_doctor(installed):
    user, _ = installed
    version = user.run("labformer", "--version").stdout
    assert "labformer 0.1.0" in version and torch.__version__ in version
    report = json.loads(user.run("labformer", "doctor", "--seconds", "1", "--json").stdout)
    assert report["labformer"] == "0.1.0" and report["torch"] == torch.__version__ and report["device"] == "cpu"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ask(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def test_serve_answers_each_page_a_prediction_and_a_translation(installed):
    user, _ = installed
    port = _free_port()
    server = subprocess.Popen(
        [str(user.venv / "bin" / "labformer"), "serve", "--port", str(port)], cwd=user.work, env=user.env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _ask(f"{base}/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "labformer serve did not start"
            time.sleep(0.5)
        for page in ("digits", "text", "seq2seq", "lab"):
            status, html = _ask(f"{base}/{page}")
            assert status == 200 and b"<html" in html.lower()
        draw_one(user.work / "one.png")
        status, answer = _ask(f"{base}/api/digits/predict", (user.work / "one.png").read_bytes(), "image/png")
        assert status == 200 and json.loads(answer)["prediction"] == "1"
        status, answer = _ask(f"{base}/api/seq2seq/translate", json.dumps({"text": "3 mars 2021"}).encode())
        assert status == 200 and json.loads(answer)["output"] == "2021-03-03"
    finally:
        server.terminate()
        server.wait(30)


def test_train_one_epoch_on_a_slice_then_predict(installed):
    user, _ = installed
    user.run("labformer", "train", "--epochs", "1", "--train-size", "2000", "--out", "vit", *TINY_VIT_ARGS)
    metrics = json.loads((user.work / "vit" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.2  # above chance (0.1) after one epoch on 2,000 digits
    draw_one(user.work / "vit-one.png")
    predicted = user.run("labformer", "predict", "vit", "vit-one.png", "--json").stdout
    assert json.loads(predicted)["prediction"] in list("0123456789")


def test_a_few_gpt_steps_on_a_small_text_then_generate(installed):
    user, _ = installed
    (user.work / "small.txt").write_text("To be, or not to be, that is the question.\n" * 40)
    user.run("labformer", "train", "gpt", "--text", "small.txt", "--iters", "5", "--eval-iters", "1",
             "--eval-interval", "5", "--out", "gpt", *TINY_GPT_ARGS)  # fmt: skip
    generated = user.run("labformer", "generate", "gpt", "--prompt", "To be", "--tokens", "20", "--device", "cpu")
    assert generated.stdout.startswith("To be") and set(generated.stdout.strip()) <= set("To be, or not th iqusn.\n")


def test_lab_all_writes_the_report(installed):
    user, _ = installed
    user.run("labformer", "lab", "all", "--out", "report")
    assert (user.work / "report" / "report.html").stat().st_size > 10_000


def test_the_shipped_models_by_name(installed):
    user, _ = installed
    assert user.run("labformer", "translate", "dates", "3 mars 2021").stdout == "3 mars 2021 -> 2021-03-03\n"
    assert user.run("labformer", "generate", "text", "--prompt", "ROMEO:", "--tokens", "20").stdout.startswith("ROMEO:")
    draw_one(user.work / "stroke.png")
    assert user.run("labformer", "predict", "digits", "stroke.png").stdout.startswith("stroke.png: 1 ")


def test_exercises_and_check_on_the_solutions(installed):
    user, _ = installed
    user.run("labformer", "exercises", "--solutions", "--out", "exercises")
    checked = user.run("labformer", "check", "exercises/lab8-exercises-solutions.py", "--json")
    statuses = [exercise["status"] for exercise in json.loads(checked.stdout)["exercises"]]
    assert statuses == ["pass"] * 15


def test_the_lab_notebook_runs_top_to_bottom(installed):
    user, _ = installed
    notebook = user.work / NOTEBOOK.name
    notebook.write_text(NOTEBOOK.read_text())
    cells = user.execute(notebook).cells
    text = "".join(outputs(cell) for cell in cells)
    assert "computing on cpu" in outputs(cells[1]) and "installing" not in outputs(cells[1])
    assert "(lab: 259.66)" in text and "test accuracy" in text and "Part 5 is skipped" not in text


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_exercises_notebook_runs_top_to_bottom(installed, language):
    user, _ = installed
    user.run("labformer", "exercises", "--solutions", "--lang", language, "--out", f"notebook-{language}")
    notebook = user.work / f"notebook-{language}" / "lab8-exercises-solutions.ipynb"
    cells = user.execute(notebook).cells
    checks = [outputs(cell) for cell in cells if cell.cell_type == "code" and "check(" in cell.source]
    assert len(checks) == 15 and all(text.startswith("✓") for text in checks), checks
    student = user.work / f"notebook-{language}" / "lab8-exercises.ipynb"
    user.run("labformer", "exercises", "--lang", language, "--out", f"notebook-{language}")
    cells = [cell for cell in user.execute(student, errors=True).cells if cell.cell_type == "code"]
    assert not errors(cells[0]) and not errors(cells[1])  # the install cell and the imports
    assert set(sum((errors(cell) for cell in cells), [])) <= {"NotImplementedError", "ExerciseNotPassedError"}
