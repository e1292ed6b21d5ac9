"""``labformer serve`` on a network: the Host check (DNS rebinding), the Origin check (cross-site POSTs),
no path of the server's disk in any answer, the lab build behind --allow-build and one at a time, and a
stream that stops when its reader leaves. The last ones run a real server in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import script
from starlette.testclient import TestClient

from labformer.serve import load_app
from labformer.serve.models import PRETRAINED
from labformer.serve.security import Hosts, host_name

PREDICT = {"Content-Type": "image/png"}


def blank_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("LocalHost:8000", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("classroom.local.:80", "classroom.local"),
        ("", ""),
    ],
)
def test_host_names_are_read_without_port_brackets_or_case(header, name):
    assert host_name(header) == name


def test_the_names_a_server_answers():
    local = Hosts.for_server("127.0.0.1")
    for header in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
        assert local.allows(header, "127.0.0.1"), header
    for header in ("attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io", "", "10.0.0.5"):
        assert not local.allows(header, "10.0.0.5"), header  # not even an IP it arrived on: not listening there
    named = Hosts.for_server("classroom.local", ["lab-pc", "Teacher.School.Example"])
    assert all(named.allows(h, None) for h in ("classroom.local:8000", "lab-pc", "teacher.school.example"))
    assert not named.allows("attacker.example", None)
    assert Hosts.for_server("127.0.0.1", ["*"]).allows("anything.example", None)


def test_listening_everywhere_answers_this_machines_names_and_the_address_a_request_reached():
    everywhere = Hosts.for_server("0.0.0.0")
    assert everywhere.allows(f"{socket.gethostname()}:8000", "192.168.1.10")
    assert everywhere.allows("192.168.1.10:8000", "192.168.1.10")  # a student typed the teacher's address
    assert not everywhere.allows("192.168.1.99:8000", "192.168.1.10")  # an address that is not where it arrived
    assert not everywhere.allows("attacker.example:8000", "192.168.1.10")  # a rebinding name


@pytest.fixture(scope="module")
def app_parts(tmp_path_factory):
    """The shipped digits model copied to a run folder of a temporary disk path, and an app serving it
    with builds allowed (its report folder under the same path)."""
    root = tmp_path_factory.mktemp("secret-home")
    run = root / "runs" / "my-digits"
    shutil.copytree(PRETRAINED / "digits", run)
    app, _ = load_app([run], lab_dir=root / "lab-report", runs_root=root / "runs", allow_build=True)
    return app, root


@pytest.fixture(scope="module")
def local(app_parts) -> TestClient:
    return TestClient(app_parts[0], base_url="http://localhost:8000")


@pytest.mark.parametrize("path", ["/api/health", "/digits", "/static/style.css", "/api/lab"])
def test_a_foreign_host_gets_403_on_every_route(app_parts, path):
    client = TestClient(app_parts[0], base_url="http://attacker.example:8000")
    answer = client.get(path)
    assert answer.status_code == 403
    assert "'attacker.example'" in answer.json()["error"] and "--allow-host" in answer.json()["error"]


@pytest.mark.parametrize(
    "origin", ["http://attacker.example", "http://localhost:9999", "https://localhost:8000", "null"]
)
def test_a_cross_origin_post_gets_403_and_runs_nothing(local, origin, monkeypatch):
    import labformer.lab.report as report

    builds: list[Path] = []
    monkeypatch.setattr(report, "write_report", builds.append)
    predictions = local.get("/api/health").json()["usage"]["predictions"]
    answer = local.post("/api/digits/predict", content=blank_png(), headers={**PREDICT, "Origin": origin})
    assert answer.status_code == 403 and "another site" in answer.json()["error"]
    answer = local.post("/api/lab/build", json={}, headers={"Origin": origin})
    assert answer.status_code == 403
    assert builds == [] and local.get("/api/health").json()["usage"]["predictions"] == predictions


def test_a_same_origin_post_and_a_post_with_no_origin_are_answered(local):
    for headers in ({**PREDICT, "Origin": "http://localhost:8000"}, PREDICT):
        answer = local.post("/api/digits/predict", content=blank_png(), headers=headers)
        assert answer.status_code == 200 and answer.json()["empty"] is True


def test_no_answer_names_a_path_of_the_servers_disk(app_parts, local):
    app, root = app_parts
    answers = [local.get(path).text for path in ("/api/health", "/api/lab", "/api/nothing")]
    answers.append(local.post("/api/digits/predict", content=blank_png(), headers=PREDICT).text)
    answers.append(local.post("/api/text/generate", json={"prompt": "x"}).text)  # no text model: a 404's message
    health = json.loads(answers[0])
    assert health["digits"]["name"] == "my-digits"  # the run folder by name
    for text in answers:
        for secret in (str(root), str(root.parent), str(PRETRAINED), str(Path.home()), os.getcwd()):
            assert secret not in text, (secret, text[:200])


def test_the_lab_build_is_off_unless_allowed():
    app, _ = load_app([], lab_dir="unused-lab", runs_root=Path("no-runs"))
    client = TestClient(app, base_url="http://localhost")
    assert client.get("/api/lab").json()["can_build"] is False
    answer = client.post("/api/lab/build", json={})
    assert answer.status_code == 403 and "--allow-build" in answer.json()["error"]
    assert not Path("unused-lab").exists()


def test_concurrent_builds_run_once_and_the_others_get_409(app_parts, monkeypatch):
    import labformer.lab.report as report

    calls, started, release = [], threading.Event(), threading.Event()

    def slow_build(out: Path) -> None:
        calls.append(out)
        started.set()
        release.wait(30)
        (Path(out) / "report.html").parent.mkdir(parents=True, exist_ok=True)
        (Path(out) / "report.html").write_text("<h1>report</h1>")

    monkeypatch.setattr(report, "write_report", slow_build)
    server, url = script("screenshots").serve_in_thread(app_parts[0])
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            first: list[httpx.Response] = []
            worker = threading.Thread(target=lambda: first.append(client.post("/api/lab/build", json={})))
            worker.start()
            assert started.wait(30)
            assert client.get("/api/lab").json()["building"] is True
            others = [client.post("/api/lab/build", json={}) for _ in range(3)]
            release.set()
            worker.join(60)
    finally:
        release.set()
        server.should_exit = True
    assert [answer.status_code for answer in others] == [409, 409, 409]
    assert "being built already" in others[0].json()["error"]
    assert first[0].status_code == 200 and first[0].json()["available"] is True
    assert len(calls) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """``labformer serve --host 0.0.0.0`` as a user starts it: a subprocess, the shipped models."""
    lab = tmp_path_factory.mktemp("served-lab")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "labformer", "serve", "--host", "0.0.0.0", "--port", str(port), "--lab", str(lab)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=lab,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {process.stdout.read()}")
            time.sleep(0.2)
        yield process, base
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc (Linux)")
def test_the_command_refuses_a_foreign_host_and_a_cross_origin_post_and_warns_on_a_network(real_server):
    process, base = real_server
    assert httpx.get(f"{base}/api/health", headers={"Host": "attacker.example"}).status_code == 403
    answer = httpx.post(f"{base}/api/lab/build", json={}, headers={"Origin": "http://attacker.example"})
    assert answer.status_code == 403
    assert httpx.post(f"{base}/api/lab/build", json={}).status_code == 403  # builds are off: no --allow-build
    process.terminate()
    output = process.communicate(timeout=30)[0]
    assert "anyone on the network" in output and "Students open http://" in output


@pytest.fixture
def streaming_server(tmp_path):
    lab = tmp_path / "lab"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "labformer", "serve", "--port", str(port), "--lab", str(lab)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
    yield process, base
    process.terminate()
    process.wait(30)


def characters_generated(base: str) -> int:
    return httpx.get(f"{base}/api/health").json()["usage"]["characters"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc (Linux)")
def test_a_stream_stops_when_its_reader_leaves(streaming_server):
    process, base = streaming_server
    before = characters_generated(base)
    request = {"prompt": "\n", "tokens": 2000, "seed": 1}
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{base}/api/text/generate", json=request) as r:
        received = ""
        for chunk in r.iter_text():
            received += chunk
            if len(received) >= 50:
                break
        cpu_streaming = cpu_seconds(process.pid)
    # the reader has gone: the connection is closed
    time.sleep(1.0)
    count, cpu = characters_generated(base), cpu_seconds(process.pid)
    time.sleep(2.0)
    assert characters_generated(base) == count  # nothing more was sampled
    assert cpu_seconds(process.pid) - cpu < 0.2  # and the server's CPU is idle (2 s observed)
    assert 50 <= count - before < 2000  # it did generate while read, and stopped well short of 2,000
    assert cpu_streaming > 0
