"""``labformer serve`` over real HTTP: the round trip of one digit prediction, and text streaming speed.

Run: ``python benchmarks/serve.py [RUN_DIR ...]`` (default: the pretrained models shipped in the package).
Starts the server in a subprocess (uvicorn, as ``labformer serve`` does) and, from this process:
- predicts 200 MNIST test digits one at a time (PNG bodies, as the page sends them): median and p90
  round-trip milliseconds, and the same model called directly in this process for comparison;
- streams 1,000 characters three times (seeds 1-3) and reports characters per second, counted from
  the request to the last character, and the time to the first character.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import time

import httpx
from PIL import Image
from report import Report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*")
    args = parser.parse_args()
    from labformer.data import load_mnist
    from labformer.serve.models import DigitModel, find_runs

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "labformer", "serve", *args.run_dirs, "--port", str(port), "--lab", "/nonexistent"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        print(server.stdout.readline().strip(), server.stdout.readline().strip(), server.stdout.readline().strip())
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):  # uvicorn starts listening just after the URL is printed
            try:
                httpx.get(f"{base}/api/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        test = load_mnist().test
        bodies = [png(test.images[i, 0].numpy()) for i in range(200)]
        rows = []
        with httpx.Client(base_url=base, timeout=60) as client:
            for body in bodies[:10]:  # warm-up
                client.post("/api/digits/predict", content=body, headers={"Content-Type": "image/png"})
            times = []
            for body in bodies:
                started = time.perf_counter()
                answer = client.post("/api/digits/predict", content=body, headers={"Content-Type": "image/png"})
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
            times.sort()
            predict_ms = statistics.median(times) * 1e3
            rows.append(["predict round trip (HTTP, 1 PNG)", f"{statistics.median(times) * 1e3:.1f} ms",
                         f"p90 {times[int(0.9 * len(times))] * 1e3:.1f} ms", "≤ 30 ms median"])  # fmt: skip
            direct = DigitModel(find_runs(args.run_dirs).get("vit"))
            local = []
            for body in bodies:
                started = time.perf_counter()
                direct.predict(body)
                local.append(time.perf_counter() - started)
            rows.append(["the same, called in-process (no HTTP)", f"{statistics.median(local) * 1e3:.1f} ms", "", ""])
            speeds, first = [], []
            for seed in (1, 2, 3):
                request = {"prompt": "ROMEO:", "tokens": 1000, "temperature": 0.8, "seed": seed}
                started = time.perf_counter()
                received = 0
                with client.stream("POST", "/api/text/generate", json=request) as response:
                    for chunk in response.iter_text():
                        if not received:
                            first.append(time.perf_counter() - started)
                        received += len(chunk)
                assert received == 1000, received
                speeds.append(received / (time.perf_counter() - started))
            stream = statistics.median(speeds)
            rows.append(["text streaming (1,000 characters)", f"{statistics.median(speeds):,.0f} chars/s",
                         f"first after {statistics.median(first) * 1e3:.0f} ms", "≥ 200 chars/s"])  # fmt: skip
            health = client.get("/api/health").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = Report("serve")
    report.table(f"`labformer serve` over HTTP (digits: {health['digits']['name']}; text: {health['text']['name']}).",
                 ["measure", "median", "", "target"], rows)  # fmt: skip
    report.target("predict round trip ≤ 30 ms (median)", f"{predict_ms:.1f} ms", predict_ms <= 30,
                  f"by {predict_ms - 30:.1f} ms")  # fmt: skip
    report.target("text streaming ≥ 200 characters/s", f"{stream:,.0f} characters/s", stream >= 200,
                  f"by {200 - stream:.0f} characters/s")  # fmt: skip
    report.save()


if __name__ == "__main__":
    main()
