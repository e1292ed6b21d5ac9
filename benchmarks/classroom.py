"""A class at once: N students (default 30) on one ``labformer serve`` for 60 s, then one student alone.

Run: ``python benchmarks/classroom.py [--students 30] [--seconds 60] [RUN_DIR ...]`` (default: the
pretrained models shipped in the package). Starts ``labformer serve`` in a subprocess, as a teacher
does, and simulates the students from this process (asyncio, one HTTP connection each — on the same
cores as the server, so the numbers are a floor for a real class whose laptops do their own work):

- every student draws: a digit prediction every 300 ms (an MNIST test digit, sent as the page sends the
  pad: a PNG of ``--image-size`` pixels, white ink on black), the next one waiting if an answer is late;
- one student in six also writes: streams 300 characters of text (temperature 0.8, a new seed each
  time), pauses 2-4 s, and again.

Reports answered and failed requests, predict latency p50/p95/p99 (request to the whole JSON answer),
the writers' characters per second (request to last character, per stream) and the server's CPU use,
for N students and for one student who also writes. Targets on 2 cores: 0 failed requests, predict p95
≤ 150 ms, streams ≥ 50 characters/s each.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from report import Report

PNG = {"Content-Type": "image/png"}
PERIOD = 0.3  # s between a student's predictions
WRITE = 300  # characters per stream
TARGET_P95_MS, TARGET_CHARS = 150, 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pad_png(digit: np.ndarray, size: int) -> bytes:
    """An MNIST digit as the pad sends it: scaled to ``size`` pixels, encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(digit).resize((size, size), Image.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Class:
    """The requests of one simulated class and what came back."""

    def __init__(self, base: str, bodies: list[bytes], seconds: float) -> None:
        self.base, self.bodies, self.seconds = base, bodies, seconds
        self.latencies: list[float] = []  # s, answered predictions
        self.speeds: list[float] = []  # characters/s, complete streams
        self.first: list[float] = []  # s to the first character
        self.failures: list[str] = []
        self.streams = 0

    async def draw(self, student: int, deadline: float) -> None:
        rng = random.Random(student)
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as client:
            await asyncio.sleep(rng.uniform(0, PERIOD))  # students do not start in step
            tick = time.perf_counter()
            while tick < deadline:
                body = self.bodies[rng.randrange(len(self.bodies))]
                started = time.perf_counter()
                try:
                    answer = await client.post("/api/digits/predict", content=body, headers=PNG)
                    answer.json()
                    if answer.status_code != 200:
                        raise RuntimeError(f"{answer.status_code} {answer.text[:100]}")
                    self.latencies.append(time.perf_counter() - started)
                except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                    self.failures.append(f"predict: {type(error).__name__}: {error}")
                tick += PERIOD
                now = time.perf_counter()
                while tick < now:  # a late answer: the next drawing waits for it, none piles up
                    tick += PERIOD
                await asyncio.sleep(max(0.0, tick - now))

    async def write(self, student: int, deadline: float) -> None:
        rng = random.Random(1000 + student)
        async with httpx.AsyncClient(base_url=self.base, timeout=120) as client:
            await asyncio.sleep(rng.uniform(0, 2))
            while time.perf_counter() < deadline:
                request = {"prompt": "\n", "tokens": WRITE, "temperature": 0.8, "seed": rng.randrange(2**31)}
                started, received = time.perf_counter(), 0
                try:
                    async with client.stream("POST", "/api/text/generate", json=request) as response:
                        if response.status_code != 200:
                            raise RuntimeError(f"{response.status_code}")
                        async for chunk in response.aiter_text():
                            if not received:
                                self.first.append(time.perf_counter() - started)
                            received += len(chunk)
                    if received != WRITE:
                        raise RuntimeError(f"{received} characters of {WRITE}")
                    self.speeds.append(received / (time.perf_counter() - started))
                    self.streams += 1
                except Exception as error:  # noqa: BLE001
                    self.failures.append(f"generate: {type(error).__name__}: {error}")
                await asyncio.sleep(rng.uniform(2, 4))

    async def run(self, students: int, every: int) -> None:
        deadline = time.perf_counter() + self.seconds
        tasks = [self.draw(i, deadline) for i in range(students)]
        tasks += [self.write(i, deadline) for i in range(0, students, every)]  # students 0, 6, 12, …
        await asyncio.gather(*tasks)


def start_server(run_dirs: list[str], lab: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "labformer", "serve", *run_dirs, "--port", str(port), "--lab", lab],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{base}/api/health").status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("the server did not start within 60 s")


def measure(
    server: subprocess.Popen, base: str, bodies: list[bytes], students: int, seconds: float, every: int
) -> dict:  # noqa: E501
    lesson = Class(base, bodies, seconds)
    cpu, own, started = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
    asyncio.run(lesson.run(students, every))
    wall = time.perf_counter() - started
    own = (time.process_time() - own) / wall
    latencies = lesson.latencies
    return {
        "students": students,
        "writers": len(range(0, students, every)),
        "seconds": round(wall, 1),
        "predictions": len(latencies),
        "streams": lesson.streams,
        "failed": len(lesson.failures),
        "failures": sorted(set(lesson.failures))[:5],
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "chars_median": statistics.median(lesson.speeds) if lesson.speeds else float("nan"),
        "chars_min": min(lesson.speeds) if lesson.speeds else float("nan"),
        "first_ms": statistics.median(lesson.first) * 1e3 if lesson.first else float("nan"),
        "server_cpu": (cpu_seconds(server.pid) - cpu) / wall,
        "students_cpu": own,
    }


def served_commit() -> str:
    """The commit of the labformer checkout this process (and so the server it starts) imports."""
    import labformer

    found = subprocess.run(
        ["git", "-C", str(Path(labformer.__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    dirty = subprocess.run(["git", "-C", str(Path(labformer.__file__).parent), "diff", "--quiet", "HEAD", "--", "."])
    return (found.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty.returncode else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", help="ViT and GPT runs to serve (default: the shipped models)")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the class (default: 60)")
    parser.add_argument("--alone-seconds", type=float, default=20.0, help="length of the one-student run")
    parser.add_argument("--writers-every", type=int, default=6, help="one student in this many also writes")
    parser.add_argument(
        "--image-size", type=int, default=56, help="side of the PNG a student sends (the page sends 56)"
    )
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    parser.add_argument(
        "--design", default="", help="a name for the server measured (saved as classroom-NAME), e.g. an older "
        "labformer put first on PYTHONPATH to measure before a change",
    )  # fmt: skip
    args = parser.parse_args()
    from labformer.data import load_mnist

    test = load_mnist().test
    bodies = [pad_png(test.images[i, 0].numpy(), args.image_size) for i in range(100)]
    with tempfile.TemporaryDirectory() as lab:
        server, base = start_server(args.run_dirs, lab)
        try:
            health = httpx.get(f"{base}/api/health").json()
            measure(server, base, bodies, 1, 3, 1)  # warm-up: first requests, first stream
            alone = measure(server, base, bodies, 1, args.alone_seconds, 1)
            together = measure(server, base, bodies, args.students, args.seconds, args.writers_every)
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = []
    for result in (alone, together):
        who = f"{result['students']} student{'s' * (result['students'] > 1)} ({result['writers']} writing)"
        rows.append([who, f"{result['predictions']:,} / {result['failed']}", f"{result['p50_ms']:.0f}",
                     f"{result['p95_ms']:.0f}", f"{result['p99_ms']:.0f}", f"{result['streams']}",
                     f"{result['chars_median']:.0f} (min {result['chars_min']:.0f})", f"{result['first_ms']:.0f}",
                     f"{result['server_cpu']:.2f}", f"{result['students_cpu']:.2f}"])  # fmt: skip
        print(rows[-1], result["failures"], flush=True)
    if args.no_save:
        return
    report = Report(f"classroom-{args.design}" if args.design else "classroom")
    report.table(
        f"`labformer serve` for a class: each student predicts a drawn digit every {PERIOD * 1e3:.0f} ms, one in "
        f"{args.writers_every} also streams {WRITE} characters, pauses 2–4 s and again; "
        f"{together['seconds']:.0f} s with the class, {alone['seconds']:.0f} s alone (digits: "
        f"{health['digits']['name']}; text: {health['text']['name']}; the students run on the server's cores).",
        ["who", "predictions / failed", "p50 ms", "p95 ms", "p99 ms", "streams", "characters/s each",
         "first character ms", "server CPU (cores)", "students' CPU (cores)"],
        rows,
    )  # fmt: skip
    failed = alone["failed"] + together["failed"]
    report.target("no failed request (class and alone)", f"{failed} failed", failed == 0, f"{failed} failed")
    report.target(
        f"predict p95 ≤ {TARGET_P95_MS} ms with {args.students} students",
        f"{together['p95_ms']:.0f} ms",
        together["p95_ms"] <= TARGET_P95_MS,
        f"by {together['p95_ms'] - TARGET_P95_MS:.0f} ms",
    )
    report.target(
        f"each stream ≥ {TARGET_CHARS} characters/s with {args.students} students",
        f"slowest {together['chars_min']:.0f}, median {together['chars_median']:.0f} characters/s",
        together["chars_min"] >= TARGET_CHARS,
        f"slowest by {TARGET_CHARS - together['chars_min']:.0f} characters/s",
    )
    report.note(f"The server measured: labformer at commit {served_commit()}.")
    report.save({"results": {"alone": alone, "class": together}})


if __name__ == "__main__":
    main()
