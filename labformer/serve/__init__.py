"""``labformer serve``: a local web page where you draw a digit and watch every head attend, type a prompt
and watch the GPT write, and type a date and watch the encoder–decoder read it (see
:mod:`labformer.serve.app` for the pages and the API)."""

from __future__ import annotations

import socket
from pathlib import Path

from labformer.serve.app import create_app
from labformer.serve.models import NAMES, DigitModel, Seq2SeqModel, TextModel, find_runs

__all__ = ["create_app", "load_app", "serve"]


def load_app(run_dirs: list[str | Path], lab_dir: str | Path = "lab-report", runs_root: Path = Path("runs")):
    """The application with the models of ``run_dirs`` (or the newest runs under ``runs_root``, or the
    pretrained ones); returns it and the run directory served per kind."""
    chosen = find_runs(run_dirs, runs_root)
    digits = DigitModel(chosen["vit"]) if "vit" in chosen else None
    text = TextModel(chosen["gpt"]) if "gpt" in chosen else None
    seq2seq = Seq2SeqModel(chosen["seq2seq"]) if "seq2seq" in chosen else None
    return create_app(digits, text, Path(lab_dir), seq2seq), chosen


def serve(
    run_dirs: list[str | Path], *, host: str = "127.0.0.1", port: int = 8000, lab_dir: str = "lab-report"
) -> None:
    """Loads the models and serves the pages until Ctrl-C."""
    import uvicorn

    if not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535; got {port}")
    app, chosen = load_app(run_dirs, lab_dir)
    with socket.socket() as probe:  # a clear error instead of uvicorn's log line when the port is taken
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ValueError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port") from None
    for kind, run_dir in sorted(chosen.items()):
        print(f"{NAMES[kind]}: {run_dir}")
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    print(f"labformer serve: http://{shown}:{port}/  (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
