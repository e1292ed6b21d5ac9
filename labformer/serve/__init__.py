"""``labformer serve``: a local web page where you draw a digit and watch every head attend, type a prompt
and watch the GPT write, and type a date and watch the encoder–decoder read it (see
:mod:`labformer.serve.app` for the pages and the API)."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from labformer.serve.app import create_app
from labformer.serve.models import NAMES, DigitModel, Seq2SeqModel, TextModel, find_runs
from labformer.serve.security import Hosts, is_wildcard, machine_names

__all__ = ["create_app", "load_app", "serve"]


def load_app(
    run_dirs: list[str | Path],
    lab_dir: str | Path = "lab-report",
    runs_root: Path = Path("runs"),
    *,
    hosts: Hosts | None = None,
    allow_build: bool = False,
):
    """The application with the models of ``run_dirs`` (or the newest runs under ``runs_root``, or the
    pretrained ones); returns it and the run directory served per kind."""
    chosen = find_runs(run_dirs, runs_root)
    digits = DigitModel(chosen["vit"]) if "vit" in chosen else None
    text = TextModel(chosen["gpt"]) if "gpt" in chosen else None
    seq2seq = Seq2SeqModel(chosen["seq2seq"]) if "seq2seq" in chosen else None
    return create_app(digits, text, Path(lab_dir), seq2seq, hosts=hosts, allow_build=allow_build), chosen


def serve(
    run_dirs: list[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    lab_dir: str = "lab-report",
    allow_hosts: Iterable[str] = (),
    allow_build: bool = False,
) -> None:
    """Loads the models and serves the pages until Ctrl-C: to this machine only by default; with
    ``host="0.0.0.0"`` to everyone on the network, answering this machine's names and addresses and the
    ``allow_hosts`` names (see :mod:`labformer.serve.security`)."""
    import uvicorn

    from labformer.serve.runner import serving_threads

    if not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535; got {port}")
    allow_hosts = list(allow_hosts)
    for name in allow_hosts:
        if not name.strip() or "/" in name or " " in name.strip():
            raise ValueError(f"--allow-host takes a host name such as classroom.local or '*'; got {name!r}")
    hosts = Hosts.for_server(host, allow_hosts)
    serving_threads()
    app, chosen = load_app(run_dirs, lab_dir, hosts=hosts, allow_build=allow_build)
    with socket.socket() as probe:  # a clear error instead of uvicorn's log line when the port is taken
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ValueError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port") from None
    for kind, run_dir in sorted(chosen.items()):
        print(f"{NAMES[kind]}: {run_dir}")
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host
    print(f"labformer serve: http://{shown}:{port}/  (Ctrl-C stops it)", flush=True)
    if is_wildcard(host):
        addresses = sorted(name for name in machine_names() if not name.startswith("127.") and name != "::1")
        print(
            "warning: --host {host} serves the pages to anyone on the network who can reach this machine "
            "(they can use the models; they cannot change files"
            + ("; --allow-build lets them rebuild the lab report" if allow_build else "")
            + f"). Students open http://{addresses[0] if addresses else 'THIS-MACHINE'}:{port}/".format(host=host)
            + (f" (or {', '.join(addresses[1:4])})" if len(addresses) > 1 else ""),
            flush=True,
        )
    if hosts.any_name:
        print("warning: --allow-host '*' answers any Host name: a web page can reach this server by DNS rebinding")
    uvicorn.run(app, host=host, port=port, log_level="warning")
