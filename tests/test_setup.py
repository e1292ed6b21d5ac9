"""`setup.sh` picks the PyTorch wheel from facts of the machine: the CPU-only index on Linux without an
NVIDIA GPU, pip's own choice with a GPU or when pip is pointed at a mirror or a wheel folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def plan(tmp_path: Path, *, gpu: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """setup.sh's dry run, from a copy in ``tmp_path``, with no pip configuration but ``env`` and a fake
    ``nvidia-smi`` if ``gpu``."""
    for name in ("setup.sh", "requirements-dev.txt"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if gpu:
        fake = bin_dir / "nvidia-smi"
        fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\n")
        fake.chmod(0o755)
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "LABFORMER_"))}
    clean.update(PATH=f"{bin_dir}{os.pathsep}{clean['PATH']}", PYTHON=sys.executable, LABFORMER_SETUP_DRY_RUN="1")
    clean.update({"PIP_CONFIG_FILE": os.devnull, **env})  # by default pip reads no config file
    return subprocess.run(["bash", str(tmp_path / "setup.sh")], env=clean, capture_output=True, text=True)


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or Path("/proc/driver/nvidia/version").exists(),
    reason="the choice on Linux without an NVIDIA GPU",
)


def test_no_gpu_and_no_pip_configuration_takes_the_cpu_wheel(tmp_path):
    done = plan(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no NVIDIA GPU" in done.stdout and CPU_INDEX in done.stdout


def test_an_nvidia_gpu_keeps_pypis_cuda_wheel(tmp_path):
    done = plan(tmp_path, gpu=True)
    assert done.returncode == 0, done.stderr
    assert "NVIDIA GPU is present" in done.stdout and "--index-url" not in done.stdout


@pytest.mark.parametrize("variable", ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"])
def test_a_pip_pointed_at_a_mirror_is_honoured(tmp_path, variable):
    done = plan(tmp_path, **{variable: "https://mirror.example/simple"})
    assert done.returncode == 0, done.stderr
    assert "configured with its own index" in done.stdout and "--index-url" not in done.stdout


def test_a_pip_config_file_naming_an_index_is_honoured(tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nextra-index-url = https://mirror.example/simple\n")
    done = plan(tmp_path, PIP_CONFIG_FILE=str(config))
    assert "configured with its own index" in done.stdout and "--index-url" not in done.stdout


@pytest.mark.parametrize(("value", "expected"), [("cpu", CPU_INDEX), ("default", "install -q torch==")])
def test_labformer_torch_overrides_the_choice(tmp_path, value, expected):
    done = plan(tmp_path, gpu=True, LABFORMER_TORCH=value)
    assert done.returncode == 0 and expected in done.stdout
    assert (CPU_INDEX in done.stdout) == (value == "cpu")


def test_an_unknown_choice_is_one_clear_error(tmp_path):
    done = plan(tmp_path, LABFORMER_TORCH="gpu")
    assert done.returncode == 2
    assert done.stderr.strip() == "setup.sh: LABFORMER_TORCH must be auto, cpu or default; got 'gpu'"


def test_the_dry_run_installs_nothing(tmp_path):
    done = plan(tmp_path)
    assert done.stdout.splitlines()[-1].startswith("would run: python -m pip install -q torch==")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "requirements-dev.txt", "setup.sh"]


def test_the_claimed_python_and_torch_ranges_are_the_ones_ci_runs():
    """pyproject.toml's ranges open at the oldest end .ci/torch-range runs and close just past the newest;
    the whole suite's own pins (requirements-dev.txt, this interpreter) lie inside them."""
    import re

    import tomllib
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ends = re.search(r"^ENDS=\((.*)\)", (ROOT / ".ci" / "torch-range").read_text(), re.MULTILINE).group(1)
    (old_python, old_torch), (new_python, new_torch) = [pair.split() for pair in re.findall(r'"([^"]+)"', ends)]
    torch_range = SpecifierSet(next(d for d in project["dependencies"] if d.startswith("torch")).removeprefix("torch"))

    def minor(version: str) -> tuple[int, int]:
        return tuple(int(part) for part in version.split(".")[:2])  # type: ignore[return-value]

    def next_minor(version: str) -> str:
        major, number = minor(version)
        return f"{major}.{number + 1}"

    assert project["requires-python"] == f">={old_python},<{next_minor(new_python)}"
    assert torch_range == SpecifierSet(f">={'.'.join(old_torch.split('.')[:2])},<{next_minor(new_torch)}")
    assert old_torch in torch_range and new_torch in torch_range and next_minor(new_torch) not in torch_range
    pinned = re.search(r"^torch==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE).group(1)
    assert pinned in torch_range
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert minor(old_python) <= minor(python) <= minor(new_python)
    classifiers = {c.rsplit(" ", 1)[1] for c in project["classifiers"] if c.startswith("Programming Language")}
    assert classifiers == {f"3.{n}" for n in range(minor(old_python)[1], minor(new_python)[1] + 1)}
