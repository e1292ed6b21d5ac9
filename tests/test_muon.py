"""labformer's Muon against torch.optim.Muon (the same update where both orthogonalise in bfloat16, close in
float32) and against a float64 reference orthogonalisation computed from the SVD; its precision decided
from the CPU's facts, saved with the run, kept on resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim._muon import _zeropower_via_newtonschulz

from labformer.training import runtime
from labformer.training.checkpoint import read_resumable_run
from labformer.training.muon import NS_COEFFICIENTS, Muon, orthogonalise
from labformer.training.recipes import LanguageConfig
from labformer.training.runtime import cpu_info, muon_precision_choice, resolve_muon_precision
from tests.conftest import TINY_GPT_ARGS, run_cli
from tests.test_runtime import CPUINFO, no_clock  # noqa: F401 - a fixture

SHAPES = [(8, 24), (24, 8), (16, 16), (128, 512)]


def reference(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The Newton–Schulz result from its definition, in float64: the quintic p(s) = a·s + b·s³ + c·s⁵
    applied ``steps`` times to each singular value of matrix / ‖matrix‖_F, with the singular vectors kept."""
    a, b, c = NS_COEFFICIENTS
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    s = s / matrix.double().norm()
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return u @ torch.diag(s) @ vh


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_orthogonalisation_is_torchs(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    expected = _zeropower_via_newtonschulz(g, NS_COEFFICIENTS, 5, 1e-7)
    assert torch.equal(orthogonalise(g, torch.bfloat16), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_orthogonalisation_matches_the_float64_reference(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    ours, exact = orthogonalise(g, torch.float32), reference(g)
    assert ours.dtype == torch.float32 and ours.shape == g.shape
    torch.testing.assert_close(ours.double(), exact, atol=2e-5, rtol=1e-4)
    # torch's bf16 result is the same map, only rounded: within bf16's precision of the reference
    assert (_zeropower_via_newtonschulz(g, NS_COEFFICIENTS, 5, 1e-7).double() - exact).abs().max() < 5e-2


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_orthogonalisation_of_any_matrix_follows_the_definition(rows, cols, scale, seed):
    g = scale * torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(orthogonalise(g).double(), reference(g), atol=5e-5, rtol=1e-4)


def make_pair(precision: str, nesterov: bool, adjust: str | None) -> tuple[list, list, Muon, torch.optim.Muon]:
    generator = torch.Generator().manual_seed(2)
    start = [torch.randn(24, 8, generator=generator), torch.randn(16, 40, generator=generator)]
    ours = [torch.nn.Parameter(p.clone()) for p in start]
    theirs = [torch.nn.Parameter(p.clone()) for p in start]
    options = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust)
    return ours, theirs, Muon(ours, precision=precision, **options), torch.optim.Muon(theirs, **options)


def step_both(ours, theirs, a, b, seed: int) -> None:
    generator = torch.Generator().manual_seed(100 + seed)
    for p, q in zip(ours, theirs):
        p.grad = torch.randn(p.shape, generator=generator)
        q.grad = p.grad.clone()
    a.step()
    b.step()


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", [None, "original", "match_rms_adamw"])
def test_bf16_muon_takes_torchs_steps_exactly(nesterov, adjust):
    ours, theirs, a, b = make_pair("bf16", nesterov, adjust)
    for seed in range(4):
        step_both(ours, theirs, a, b, seed)
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)
        assert torch.equal(a.state[p]["momentum_buffer"], b.state[q]["momentum_buffer"])


@pytest.mark.parametrize("nesterov", [True, False])
def test_float32_muon_is_close_to_torchs(nesterov):
    ours, theirs, a, b = make_pair("float32", nesterov, "match_rms_adamw")
    start = [p.detach().clone() for p in ours]
    for seed in range(4):
        step_both(ours, theirs, a, b, seed)
    for p, q, p0 in zip(ours, theirs, start):
        moved = (q - p0).norm()
        assert (p - q).norm() < 0.02 * moved  # bf16's rounding of the update, not another algorithm
        assert torch.equal(a.state[p]["momentum_buffer"], b.state[q]["momentum_buffer"])  # float32 in both


def test_checkpoints_move_between_torchs_muon_and_ours():
    """The state dicts have one layout: a run saved by torch.optim.Muon goes on with ours in bf16 exactly
    as it would have with torch's, and ours loads into torch's."""
    ours, theirs, a, b = make_pair("bf16", True, "match_rms_adamw")
    step_both(ours, theirs, a, b, 0)
    moved = [torch.nn.Parameter(q.detach().clone()) for q in theirs]
    taken_over = Muon(moved, precision="bf16")
    taken_over.load_state_dict(copy.deepcopy(b.state_dict()))  # torch would share the buffers
    for seed in (1, 2):
        step_both(moved, theirs, taken_over, b, seed)
    assert all(torch.equal(p, q) for p, q in zip(moved, theirs))
    reloaded = torch.optim.Muon([torch.nn.Parameter(p.detach().clone()) for p in ours])
    reloaded.load_state_dict(copy.deepcopy(a.state_dict()))
    assert reloaded.state_dict()["param_groups"] == a.state_dict()["param_groups"]
    first = reloaded.param_groups[0]["params"][0]
    assert torch.equal(reloaded.state[first]["momentum_buffer"], a.state[ours[0]]["momentum_buffer"])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        Muon([torch.nn.Parameter(torch.zeros(2, 2))], precision="fp16")
    with pytest.raises(ValueError, match="2-D parameters only; got shape"):
        Muon([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match="adjust_lr_fn must be"):
        Muon([torch.nn.Parameter(torch.zeros(2, 2))], adjust_lr_fn="sqrt")


@pytest.mark.parametrize("kind", sorted(CPUINFO))
def test_auto_is_float32_on_every_cpu_from_facts_alone(kind, monkeypatch, no_clock):  # noqa: F811
    """A CPU without bf16 units (the AVX2 EPYC) and those with them all resolve float32, and no clock is read."""
    monkeypatch.setattr(runtime, "cpu_info", lambda: cpu_info(CPUINFO[kind]))
    cpu = torch.device("cpu")
    assert [resolve_muon_precision("auto", cpu) for _ in range(3)] == ["float32"] * 3
    assert resolve_muon_precision("bf16", cpu) == "bf16" and resolve_muon_precision("float32", cpu) == "float32"
    precision, why = muon_precision_choice(cpu)
    assert precision == "float32"
    has_units = cpu_info(CPUINFO[kind]).bf16_units
    assert has_units == (kind != "epyc-avx2")
    assert ("no bf16 matrix units" in why) is not has_units


def test_auto_is_bf16_on_cuda(no_clock):  # noqa: F811
    assert resolve_muon_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match=r"muon_precision must be one of \['auto', 'float32', 'bf16'\]"):
        resolve_muon_precision("half", torch.device("cpu"))


def test_a_run_saves_the_resolved_precision_and_a_resume_keeps_it(tmp_path, shakespeare):
    out = tmp_path / "run"
    args = ["--text", str(shakespeare), "--iters", "6", "--eval-interval", "3", "--eval-iters", "2", *TINY_GPT_ARGS]
    trained = run_cli("train", "gpt", *args, "--optimizer", "muon", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    config_path = out / "config.json"
    assert json.loads(config_path.read_text())["train"]["muon_precision"] == "float32"
    refused = run_cli("train", "gpt", "--resume", str(out), "--muon-precision", "bf16")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"labformer: error: {out} was trained with --muon-precision float32; a resumed run continues in that "
        "precision (drop --muon-precision, or pass --muon-precision float32); got --muon-precision bf16"
    ]
    assert json.loads((out / "metrics.json").read_text())["muon_precision"] == "float32"
    # A run saved before the setting existed trained with torch.optim.Muon's bf16: its resume goes on so.
    record = json.loads(config_path.read_text())
    del record["train"]["muon_precision"]
    config_path.write_text(json.dumps(record))
    _, settings = read_resumable_run(out, "gpt", LanguageConfig())
    assert settings["muon_precision"] == "bf16"
    _, settings = read_resumable_run(out, "gpt", LanguageConfig(muon_precision="bf16"))
    assert settings["muon_precision"] == "bf16"
