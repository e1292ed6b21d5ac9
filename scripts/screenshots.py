"""Takes the pictures of the web page that the README and the docs show (``docs/screenshots/``): each page in
its first view at a laptop's 1366 × 768, after a real interaction, with the models shipped in the package.

    python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

- ``digits.png``: a 7 drawn with mouse strokes; the prediction, the probabilities and the heads.
- ``text.png``: "ROMEO:" continued with a fixed seed, then one generated character clicked.
- ``seq2seq.png``: "mercredi 3 mars 2021" read by the dates encoder–decoder, a month digit clicked.
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


def serve_in_thread(app) -> tuple:  # noqa: ANN001 - a Starlette app; returns (uvicorn.Server, base URL)
    """``app`` on a free local port (uvicorn in a daemon thread); fails after 60 s instead of hanging."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start within 60 s")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def start_server(lab_dir: Path) -> tuple:
    """The shipped models (no run directory, none under runs/) and the report in ``lab_dir``, served."""
    from labformer.serve import load_app

    app, _ = load_app([], lab_dir=lab_dir, runs_root=lab_dir / "no-runs", allow_build=True)
    return serve_in_thread(app)


def stroke(page, points: list[tuple[float, float]]) -> None:  # noqa: ANN001 - a Playwright page
    """A mouse stroke through ``points`` given in the pad's 280×280 coordinates."""
    box = page.locator("#pad").bounding_box()
    sx, sy = box["width"] / 280, box["height"] / 280
    page.mouse.move(box["x"] + points[0][0] * sx, box["y"] + points[0][1] * sy)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * sx, box["y"] + y * sy, steps=12)
    page.mouse.up()


def generate(page, prompt: str, *, tokens: int, seed: int, temperature: float) -> None:  # noqa: ANN001
    """Fills the text page's form and presses Generate (the characters then stream in)."""
    page.fill("#prompt", prompt)
    page.fill("#tokens", str(tokens))
    page.fill("#seed", str(seed))
    page.fill("#temperature", str(temperature))
    page.click("#generate")


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
        generate(page, "ROMEO:", tokens=120, seed=3, temperature=0.8)
        expect(page.locator("#output .char")).to_have_count(len("ROMEO:") + 120, timeout=60000)
        expect(page.locator("#generate")).to_be_enabled(timeout=15000)
        page.locator("#output .char").nth(60).click()
        page.wait_for_function("() => document.querySelectorAll('#output .char.attended').length > 10")
        taken.append(out / "text.png")
        page.screenshot(path=str(taken[-1]))

        page.goto("/seq2seq")
        expect(page.locator("#model-info")).to_contain_text(health["seq2seq"]["summary"], timeout=15000)
        expect(page.locator("#s2s-output")).to_have_attribute("data-done", "true", timeout=20000)
        answer = httpx.post(f"{base}/api/seq2seq/translate", json={"text": "mercredi 3 mars 2021"}, timeout=60).json()
        expect(page.locator("#status")).to_contain_text(answer["output"])
        page.locator("#s2s-output .written").nth(5).click()  # the first month digit reads "mars"
        taken.append(out / "seq2seq.png")
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
