"""Takes the pictures of the web page that the README and the docs show (``docs/screenshots/``): each page in
its first view at a laptop's 1366 × 768, after a real interaction, with the models shipped in the package.

    python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

- ``digits.png``: a 7 drawn with mouse strokes; the prediction, the probabilities and the heads.
- ``text.png``: "ROMEO:" continued with a fixed seed, then one generated character clicked.
- ``lab.png``: the lab report built from the page (every experiment, about 15 s).

It serves the app from this checkout on a free local port (shipped models only, the report in a temporary
folder named ``lab-report``), drives Debian's Chromium with Playwright, and checks before each picture that
the page shows what the shipped models give (the model's name and numbers, the API's prediction), so a
picture never shows a stale model or a path of the machine that made it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1366, "height": 768}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SEVEN = [(70, 50), (210, 50), (120, 240)]  # one stroke, in the pad's 280 × 280 coordinates


def start_server(lab_dir: Path):  # noqa: ANN201 - (uvicorn.Server, base URL)
    import uvicorn

    from labformer.serve import load_app

    app, chosen = load_app([], lab_dir=lab_dir, runs_root=lab_dir / "no-runs")  # the shipped models
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start within 60 s")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def stroke(page, points: list[tuple[float, float]]) -> None:
    box = page.locator("#pad").bounding_box()
    sx, sy = box["width"] / 280, box["height"] / 280
    page.mouse.move(box["x"] + points[0][0] * sx, box["y"] + points[0][1] * sy)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * sx, box["y"] + y * sy, steps=12)
    page.mouse.up()


def take(out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    taken = []
    with tempfile.TemporaryDirectory() as temporary, sync_playwright() as p:
        lab_dir = Path(temporary) / "lab-report"
        lab_dir.mkdir()
        server, base = start_server(lab_dir)
        health = httpx.get(f"{base}/api/health", timeout=30).json()
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_context(base_url=base, viewport=VIEWPORT, device_scale_factor=1).new_page()

        page.goto("/digits")
        expect(page.locator("#model-info")).to_contain_text(health["digits"]["summary"], timeout=15000)
        stroke(page, SEVEN)
        expect(page.locator("#prediction")).to_have_text("7", timeout=15000)
        page.wait_for_timeout(500)  # the bars' transition
        taken.append(out / "digits.png")
        page.screenshot(path=str(taken[-1]))

        page.goto("/text")
        expect(page.locator("#model-info")).to_contain_text(health["text"]["summary"], timeout=15000)
        page.fill("#prompt", "ROMEO:")
        page.fill("#tokens", "120")
        page.fill("#seed", "3")
        page.fill("#temperature", "0.8")
        page.click("#generate")
        expect(page.locator("#output .char")).to_have_count(len("ROMEO:") + 120, timeout=60000)
        expect(page.locator("#generate")).to_be_enabled(timeout=15000)
        page.locator("#output .char").nth(60).click()
        page.wait_for_function("() => document.querySelectorAll('#output .char.attended').length > 10")
        taken.append(out / "text.png")
        page.screenshot(path=str(taken[-1]))

        page.goto("/lab")
        page.click("#build")
        expect(page.frame_locator("#report").locator("body")).to_contain_text("Transformers", timeout=180000)
        expect(page.locator("#lab-message")).to_contain_text("lab-report/")
        taken.append(out / "lab.png")
        page.screenshot(path=str(taken[-1]))
        browser.close()
        server.should_exit = True
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="the browser")
    args = parser.parse_args()
    for path in take(Path(args.out), args.chromium):
        print(path)
    print(json.dumps({"viewport": VIEWPORT}))


if __name__ == "__main__":
    main()
