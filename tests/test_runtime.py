"""labformer.training.runtime: the precision is decided from facts (never timed), and the CPU is read right."""

from __future__ import annotations

import time

import pytest
import torch

from labformer.training import runtime
from labformer.training.runtime import cpu_info, resolve_amp

# /proc/cpuinfo excerpts of the three kinds of CPU seen on the development machines.
CPUINFO = {
    "epyc-avx2": (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
    ),
    "epyc-bf16": (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n"
        "flags\t\t: avx2 avx512f avx512bw avx512_bf16\n"
    ),
    "xeon-amx": (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\nmodel name\t: other\n"
    ),
}


@pytest.mark.parametrize(
    ("kind", "model", "features", "vendor"),
    [
        ("epyc-avx2", "AMD EPYC 7B13", "AVX2", "AuthenticAMD"),
        ("epyc-bf16", "AMD EPYC 9B14", "AVX2, AVX-512, AVX512-BF16", "AuthenticAMD"),
        ("xeon-amx", "Intel(R) Xeon(R) Processor", "AVX2, AVX-512, AVX512-BF16, AMX-BF16", "GenuineIntel"),
    ],
)
def test_cpu_info_reads_the_model_and_features(kind, model, features, vendor):
    info = cpu_info(CPUINFO[kind])
    assert info.model == model and info.features == features and info.vendor == vendor
    assert str(info) == f"{model} ({features})"


def test_cpu_info_without_proc_cpuinfo():
    info = cpu_info("")
    assert info.features == "none of AVX2, AVX-512, AMX" and info.model


@pytest.fixture
def no_clock(monkeypatch):
    """Any attempt to time something fails the test: the decision must come from facts alone."""

    def refuse() -> float:
        raise AssertionError("resolve_amp read a clock")

    for name in ("perf_counter", "monotonic", "time", "process_time"):
        monkeypatch.setattr(time, name, refuse)


@pytest.mark.parametrize("kind", sorted(CPUINFO))
def test_auto_is_float32_on_every_cpu_without_timing_anything(kind, monkeypatch, no_clock):
    monkeypatch.setattr(runtime, "cpu_info", lambda: cpu_info(CPUINFO[kind]))
    cpu = torch.device("cpu")
    assert [resolve_amp("auto", cpu) for _ in range(3)] == ["none"] * 3
    assert resolve_amp("bf16", cpu) == "bf16" and resolve_amp("none", cpu) == "none"
    assert resolve_amp("bf16-ff", cpu) == "bf16-ff"


@pytest.mark.parametrize(("supported", "auto"), [(True, "bf16"), (False, "none")])
def test_auto_on_cuda_follows_bf16_support(supported, auto, monkeypatch, no_clock):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    cuda = torch.device("cuda")
    assert resolve_amp("auto", cuda) == auto and resolve_amp("none", cuda) == "none"
    if supported:
        assert resolve_amp("bf16", cuda) == "bf16"
    else:
        with pytest.raises(ValueError, match="--amp bf16 is unavailable: this GPU does not support bfloat16"):
            resolve_amp("bf16", cuda)


def test_bad_amp_is_refused():
    with pytest.raises(ValueError, match=r"amp must be one of \['auto', 'none', 'bf16', 'bf16-ff'\]; got 'fp16'"):
        resolve_amp("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="once resolved; got 'auto'"):
        runtime.autocast(torch.device("cpu"), "auto")
