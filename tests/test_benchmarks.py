"""What the benchmarks count is right: the ViT benchmark's training FLOPs, which its "% of the matmul peak"
column divides by, against a count by hand from the model's shape."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from labformer.models.vit import ViT, ViTConfig

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def vit_benchmark():
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports its sibling `timing`
    try:
        spec = importlib.util.spec_from_file_location("vit_mnist_benchmark", BENCHMARKS / "vit_mnist.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def forward_flops_by_hand(config: ViTConfig, classes: int = 10) -> int:
    """Multiply-adds × 2 of one image's forward: patch projection, per layer the four projections and the
    two attention products, the head."""
    patches = (config.image_size // config.patch_size) ** 2
    tokens, dim = patches + 1, config.dim  # the class token
    patch = 2 * patches * config.patch_size**2 * config.channels * dim
    projections = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * config.mlp_dim)
    attention = 2 * 2 * tokens * tokens * dim  # q kᵀ and the weighted sum of v, all heads together
    return patch + config.depth * (projections + attention) + 2 * dim * classes


@pytest.mark.parametrize("backend", ["labformer", "torch"])
def test_training_flops_count_the_fused_attention(vit_benchmark, backend):
    config = ViTConfig(image_size=28, patch_size=7, dim=32, depth=2, num_heads=4, mlp_dim=64, backend=backend)
    torch.manual_seed(0)
    counted = vit_benchmark.training_flops_per_image(ViT(config), torch.randn(4, 1, 28, 28))
    assert counted == 3 * forward_flops_by_hand(config)


@pytest.fixture(scope="module")
def profiles_benchmark():
    spec = importlib.util.spec_from_file_location("cpu_profiles_benchmark", BENCHMARKS / "cpu_profiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_avx2_profile_takes_effect_in_each_library(profiles_benchmark):
    """ATen and oneDNN report AVX2 under the profile's switches on every CPU; MKL names its instruction set on
    Intel CPUs only (elsewhere it says "Intel(R) Architecture processors", whatever the switch)."""
    from labformer.training.runtime import cpu_info

    seen = profiles_benchmark.verify("avx2")
    assert seen["aten"] == "AVX2" and seen["onednn"] == "Intel AVX2"
    if cpu_info().vendor == "GenuineIntel":
        assert "AVX2" in seen["mkl"] and "512" not in seen["mkl"]
    else:
        assert seen["mkl"] != "not reported"


def test_mkl_is_judged_by_what_it_can_report_on_each_vendor(profiles_benchmark):
    """MKL's verbose line names AVX2 or AVX-512 on Intel; on AMD the same generic words whatever the switch."""
    took = profiles_benchmark.mkl_took_avx2
    avx2 = "Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2)"
    avx512 = "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) with support of Intel(R) DL Boost"
    assert took(avx2, "GenuineIntel") and not took(avx512, "GenuineIntel")
    assert not took("Intel(R) Architecture processors", "GenuineIntel")
    assert took("Intel(R) Architecture processors", "AuthenticAMD")
    assert not took("not reported", "AuthenticAMD")


def profile(gemm_gflops: float, vit_ms: float, gpt_ms: float) -> dict:
    steps = {"vit": {"step_ms": vit_ms}, "gpt": {"step_ms": gpt_ms}, "gpt_muon_bf16": {"step_ms": gpt_ms}}
    return {"gemm_f32": {"gflops": gemm_gflops}, **steps}


def test_a_default_that_slows_down_more_than_float32_products_is_a_defect(profiles_benchmark):
    native = profile(300.0, 30.0, 200.0)
    # float32 products 1.5x slower; the ViT 1.8x (within 1.5 x 1.5), the GPT 4.5x (Muon in emulated bf16)
    rows = profiles_benchmark.verdicts(native, profile(200.0, 54.0, 900.0))
    found = [(r["step"], round(r["slowdown"], 2), r["defect"]) for r in rows]
    assert found == [("vit", 1.8, False), ("gpt", 4.5, True), ("gpt_muon_bf16", 4.5, True)]
    assert all(r["gemm_slowdown"] == pytest.approx(1.5) for r in rows)


def test_the_performance_page_is_the_result_files():
    """docs/performance.md is exactly what scripts/performance_page.py renders from benchmarks/results/: no
    number on it is typed by hand, and a new result is on the page only once the page is rebuilt."""
    spec = importlib.util.spec_from_file_location("performance_page", ROOT / "scripts" / "performance_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PAGE.read_text(encoding="utf-8") == module.render(), "run: python scripts/performance_page.py"
    cifar = module.CIFAR_PAGE.read_text(encoding="utf-8")
    assert cifar == module.cifar_page(), "run: python scripts/performance_page.py"


def test_every_result_file_names_its_machine_command_and_date():
    """Each benchmark's result file says what measured it: the CPU and its features, torch, the threads, the
    command that reproduces it (a script in benchmarks/) and the date."""
    runs = json.loads((BENCHMARKS / "results" / "runs.json").read_text())["runs"]
    kept = {entry["path"] for entry in runs}  # training runs and GPU files, described in runs.json
    files = [p for p in (BENCHMARKS / "results").glob("*/*.json") if p.parent.name not in kept]
    assert len({p.parent.name for p in files}) >= 3
    for path in files:
        found = json.loads(path.read_text())
        for record in found if isinstance(found, list) else [found]:
            assert record["cpu"] and record["cpu_features"] and record["torch"] and record["date"], path
            command = record["command"].split()
            runs_a_script = command[0] == "python" and command[1].startswith("benchmarks/")
            assert command[0] == "labformer" or (runs_a_script and (ROOT / command[1]).is_file()), path
    for entry in runs:
        assert (BENCHMARKS / "results" / entry["path"]).exists() and entry["machine"] and entry["date"]


def test_the_readme_results_table_is_the_result_files():
    """The README's results table is what `benchmarks/default_commands.py` writes from the recorded runs and
    the presets' result files: no number in it is typed by hand."""
    sys.path.insert(0, str(BENCHMARKS))  # it imports its sibling `cpu_profiles`
    try:
        spec = importlib.util.spec_from_file_location("default_commands", BENCHMARKS / "default_commands.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    readme = module.README.read_text()
    block = readme.split(module.BEGIN, 1)[1].split(module.END, 1)[0]
    assert block == f"\n{module.table()}\n"
    records = [r for path in module.RECORDS.glob("*.json") for r in json.loads(path.read_text())]
    recorded = {(r["command"], r["profile"]) for r in records}
    assert recorded >= {("labformer train", "native"), ("labformer train gpt", "native")}
    assert all(r["cpu"] and r["cpu_features"] and r["date"] and "metrics" in r for r in records)
