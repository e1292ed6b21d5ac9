"""The defaults on this CPU and under an emulated laptop profile (AVX2 only): is any default slower there
than float32 arithmetic itself is?

Run: ``python benchmarks/cpu_profiles.py [--steps 20] [--rounds 2]`` — alone on the machine, at the end of
every change that touches performance. Each profile runs in fresh processes (the switches are read when
the libraries load):

- ``native``: the CPU as it is;
- ``avx2``: ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's own kernels), ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN:
  convolutions, bf16 matrix products) and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL: float32 matrix products).
  Each switch is checked to have taken effect, from ``torch.backends.cpu.get_cpu_capability()``,
  ``ONEDNN_VERBOSE`` and ``MKL_VERBOSE``; the run stops if one did not.

In each profile, over ``--rounds`` rounds alternating the profiles, medians: a float32 matrix product of
the GPT's feed-forward shape (4096 × 128 · 128 × 512) and the same in bf16, then ``--steps`` training steps
(forward, backward, optimiser) of the default ViT (``fast`` preset, batch 128) and of the default GPT
(``cpu`` preset, batch 32 × 128: Muon with ``--muon-precision auto``), the GPT with ``--optimizer adamw``,
and the GPT with Muon in bf16 (``torch.optim.Muon``'s precision), each with its optimiser's share.

A default whose step slows down under the AVX2 profile by clearly more (``DEFECT_FACTOR``) than the float32
matrix product does is a defect: the table's last lines say whether there is one. The result goes to
``benchmarks/results/cpu_profiles/<cpu>.json`` (machine, versions, command, date), which
``scripts/performance_page.py`` shows on the docs' performance page.

What the emulation does not capture: the caches, memory bandwidth, clock and core count stay this
server's; AVX2 code runs on this core's execution units (a Zen 3's or a laptop's differ), and libraries
that read the CPU's features by other means than these three switches are not limited by them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import slug

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cpu_profiles"

PROFILES: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
DEFECT_FACTOR = 1.5  # a default's slow-down under AVX2 at most this many times the float32 product's
GEMM = (4096, 128, 512)  # the GPT's feed-forward product: (B·T, d) · (d, 4d)

# (key, label, what it is); the GPT steps process 32 × 128 tokens, the ViT step 128 images.
STEPS = (
    ("vit", "ViT default step (fast preset, batch 128)"),
    ("gpt", "GPT default step (cpu preset, Muon auto)"),
    ("gpt_adamw", "GPT step, --optimizer adamw"),
    ("gpt_muon_bf16", "GPT step, Muon in bf16 (torch.optim.Muon's)"),
)
DEFAULTS = ("vit", "gpt")


def probe() -> None:
    """Child: touches MKL (float32 product), oneDNN (a convolution) and ATen, then prints ATen's level."""
    import torch

    a = torch.randn(256, 256)
    a @ a
    torch.nn.functional.conv2d(torch.randn(8, 3, 32, 32), torch.randn(16, 3, 3, 3))
    print(f"aten-capability: {torch.backends.cpu.get_cpu_capability()}", flush=True)


def mkl_took_avx2(reported: str, vendor: str) -> bool:
    """Whether MKL's verbose line shows ``MKL_ENABLE_INSTRUCTIONS=AVX2`` in force, as far as it can.

    On Intel CPUs MKL names the instruction set it dispatched to ("Intel(R) Advanced Vector Extensions 2
    (Intel(R) AVX2)"). On any other vendor's CPU it names none — it reports "Intel(R) Architecture
    processors" whatever the switch says — so there the line can only show that MKL loaded and answered.
    """
    if vendor == "GenuineIntel":
        return "AVX2" in reported and "512" not in reported
    return reported != "not reported"


def verify(profile: str) -> dict[str, str]:
    """What each library reports it runs with under ``profile``; refuses a profile that did not take."""
    env = {**os.environ, **PROFILES[profile], "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--probe"], env=env, capture_output=True, text=True, check=True
    ).stdout
    found = {
        "aten": re.search(r"aten-capability: (\S+)", out),
        "onednn": re.search(r"onednn_verbose,.*?info,cpu,isa:(.+)", out),
        "mkl": re.search(r"MKL_VERBOSE oneMKL.*? for Intel\(R\) 64 architecture (.+?) enabled processors", out)
        or re.search(r"MKL_VERBOSE oneMKL.*? for Intel\(R\) 64 architecture (.+?), Lnx", out),
    }
    seen = {name: match.group(1).strip() if match else "not reported" for name, match in found.items()}
    from labformer.training.runtime import cpu_info

    vendor = cpu_info().vendor
    if profile == "avx2":
        wrong = [
            name
            for name, ok in (
                ("ATEN_CPU_CAPABILITY", seen["aten"] == "AVX2"),
                ("ONEDNN_MAX_CPU_ISA", seen["onednn"] == "Intel AVX2"),
                ("MKL_ENABLE_INSTRUCTIONS", mkl_took_avx2(seen["mkl"], vendor)),
            )
            if not ok
        ]
        if wrong:
            raise SystemExit(f"the AVX2 profile did not take effect for {', '.join(wrong)}: {seen}")
    return seen


def measure(steps: int) -> dict[str, Any]:
    """Child: the measurements of one round in this process's profile, as a dict."""
    import torch

    from labformer.doctor import default_gpt_step, fast_vit_step

    cpu = torch.device("cpu")
    result: dict[str, Any] = {}
    m, k, n = GEMM
    for dtype, name in ((torch.float32, "gemm_f32"), (torch.bfloat16, "gemm_bf16")):
        x, w = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            x @ w
        times = []
        for _ in range(max(10, steps)):
            started = time.perf_counter()
            x @ w
            times.append(time.perf_counter() - started)
        result[name] = {"gflops": 2 * m * k * n / statistics.median(times) / 1e9}
    makers = {
        "vit": lambda: fast_vit_step(cpu),
        "gpt": lambda: default_gpt_step(cpu),
        "gpt_adamw": lambda: default_gpt_step(cpu, optimizer="adamw"),
        "gpt_muon_bf16": lambda: default_gpt_step(cpu, muon_precision="bf16"),
    }
    for key, make in makers.items():
        step = make()
        for _ in range(3):
            step("none")
        times, optimizer = [], []
        for _ in range(steps):
            before, started = step.optimizer_seconds, time.perf_counter()
            step("none")
            times.append(time.perf_counter() - started)
            optimizer.append(step.optimizer_seconds - before)
        result[key] = {"step_ms": 1000 * statistics.median(times), "optimizer_ms": 1000 * statistics.median(optimizer)}
    result["threads"] = torch.get_num_threads()
    return result


def run_round(profile: str, steps: int, threads: int | None) -> dict[str, Any]:
    env = {**os.environ, **PROFILES[profile]}
    command = [sys.executable, __file__, "--measure", "--steps", str(steps)]
    if threads:
        command += ["--threads", str(threads)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number's median over the rounds."""
    merged: dict[str, Any] = {}
    for key, value in rounds[0].items():
        if isinstance(value, dict):
            merged[key] = {field: statistics.median(r[key][field] for r in rounds) for field in value}
        else:
            merged[key] = value
    return merged


def verdicts(native: dict[str, Any], avx2: dict[str, Any]) -> list[dict[str, Any]]:
    """Each default's slow-down under the AVX2 profile against the float32 product's."""
    gemm = native["gemm_f32"]["gflops"] / avx2["gemm_f32"]["gflops"]
    rows = []
    for key in (*DEFAULTS, "gpt_muon_bf16"):  # the last: the GPT's default before Muon's precision was decided
        slowdown = avx2[key]["step_ms"] / native[key]["step_ms"]
        defect = slowdown > DEFECT_FACTOR * gemm
        rows.append({"step": key, "slowdown": slowdown, "gemm_slowdown": gemm, "defect": defect})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating the profiles (medians)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe()
    if args.measure:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.steps)))
        return None
    import torch

    from labformer.training.runtime import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu}; torch {torch.__version__}", flush=True)
    checked = {profile: verify(profile) for profile in PROFILES}
    for profile, seen in checked.items():
        print(f"{profile}: ATen {seen['aten']}; oneDNN {seen['onednn']}; MKL {seen['mkl']}", flush=True)
    rounds: dict[str, list[dict[str, Any]]] = {profile: [] for profile in PROFILES}
    for index in range(args.rounds):
        for profile in PROFILES:
            rounds[profile].append(run_round(profile, args.steps, args.threads))
            print(f"round {index + 1}, {profile}: done", flush=True)
    result = {
        "command": "python benchmarks/cpu_profiles.py " + shlex.join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "cpu": cpu.model,
        "cpu_features": cpu.features,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "steps": args.steps,
        "rounds_count": args.rounds,
        "profiles": {
            profile: {
                "env": PROFILES[profile],
                "verified": checked[profile],
                "rounds": rounds[profile],
                "median": medians(rounds[profile]),
            }
            for profile in PROFILES
        },  # fmt: skip
    }
    result["verdicts"] = verdicts(result["profiles"]["native"]["median"], result["profiles"]["avx2"]["median"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{slug(cpu.model)}-{slug(cpu.features)}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(render(result))
    print(f"\nwritten: {path.relative_to(ROOT)}")
    return None


def render(result: dict[str, Any]) -> str:
    """One result as Markdown: a heading line naming the CPU, a table, and the verdict lines."""
    native, avx2 = (result["profiles"][p]["median"] for p in ("native", "avx2"))
    lines = [
        f"CPU: {result['cpu']} ({result['cpu_features']}), {native['threads']} threads, torch {result['torch']}; "
        f"{result['date']}; `{result['command']}` (medians of {result['rounds_count']} rounds of "
        f"{result['steps']} steps).",
        "",
        "| measurement | native | AVX2 profile | AVX2 slow-down |",
        "|---|---|---|---|",
    ]
    for key, label in (("gemm_f32", "float32"), ("gemm_bf16", "bf16")):
        a, b = native[key]["gflops"], avx2[key]["gflops"]
        lines.append(f"| {label} product {GEMM[0]}×{GEMM[1]}·{GEMM[1]}×{GEMM[2]} | {a:.0f} GFLOP/s | {b:.0f} GFLOP/s "
                     f"| {a / b:.2f}× |")  # fmt: skip
    for key, label in STEPS:
        a, b = native[key], avx2[key]
        lines.append(
            f"| {label} | {a['step_ms']:.1f} ms (optimiser {a['optimizer_ms']:.1f}) | {b['step_ms']:.1f} ms "
            f"(optimiser {b['optimizer_ms']:.1f}) | {b['step_ms'] / a['step_ms']:.2f}× |"
        )
    for name, profile in (("native", native), ("AVX2 profile", avx2)):
        ratio = profile["gpt_adamw"]["step_ms"] / profile["gpt"]["step_ms"]
        old = profile["gpt_adamw"]["step_ms"] / profile["gpt_muon_bf16"]["step_ms"]
        lines.append(f"| GPT default's tokens/s over AdamW's, {name} | {ratio:.2f}× (Muon in bf16: {old:.2f}×) | | |")
    lines.append("")
    for row in verdicts(native, avx2):
        label = dict(STEPS)[row["step"]]
        state = "**a defect**" if row["defect"] else "no defect"
        if row["step"] not in DEFAULTS:
            state += ", which is why it is no longer the default"
        lines.append(
            f"- {label}: {row['slowdown']:.2f}× slower under the AVX2 profile, against {row['gemm_slowdown']:.2f}× "
            f"for the float32 product: {state} (limit {DEFECT_FACTOR}× the product's)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
