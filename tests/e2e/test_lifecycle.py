"""Server lifecycle in real processes: live before ready, ready only when every model is loaded,
the log lines an operator relies on, graceful SIGTERM/SIGINT with requests in flight, a bounded
drain, shutdown while a model is still compiling, and a model that cannot load.

In-flight work is held in a pipeline node that waits for the test to open a gate (tests/gates.py),
so nothing finishes before the signal however fast the CPU is; every server here is our own
process, stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from tests.gates import Gate, assert_gated_ok, send_gated, write_gated_repository
from tests.modelzoo import add_model, heavy_model, save, slow_compile_model
from tests.rawhttp import Conn, Reply, build, get
from tests.serverproc import ServerProcess
from tests.slowwork import slow_compile_ops

WAIT = 60.0  # seconds: upper bound for any process to start, load or exit here
# Requests held in the gate at once: custom nodes run on at least two threads (pipelines/custom.py),
# so both are running (not queued) when the test signals, and the drain must count exactly these.
HELD = 2


def heavy_request(batch: int) -> bytes:
    """POST /v2/models/heavy/infer with `batch` random 3x64x64 images as one binary FP32 input."""
    x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    return build("POST", "/v2/models/heavy/infer", header + x.tobytes(),
                 {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})


def send_heavy(server: ServerProcess, count: int, batch: int) -> list[Conn]:
    conns = [Conn(server.port, timeout=WAIT) for _ in range(count)]
    request = heavy_request(batch)
    for conn in conns:
        conn.send(request)
    return conns


def assert_heavy_ok(reply: Reply, batch: int) -> None:
    assert reply.status == 200, reply.body
    (out,) = reply.json()["outputs"]
    assert out["name"] == "y" and out["shape"] == [batch, 16]


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def exit_code(server: ServerProcess, timeout: float = WAIT) -> int:
    return server.proc.wait(timeout)


def wait_log(server: ServerProcess, pattern: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, server.log()):
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise AssertionError(f"{pattern!r} not in the log:\n{server.log()}")
        time.sleep(0.01)


def log_index(log: str, pattern: str) -> int:
    found = re.search(pattern, log, re.MULTILINE)
    assert found, f"{pattern!r} not in the log:\n{log}"
    return found.start()


@pytest.fixture(scope="module")
def heavy_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heavy")
    save(heavy_model(), root / "heavy")
    return root / "heavy"


# Start-up: live at once, ready when everything is loaded


class Startup:
    """The zoo server, watched from the moment it listens until it is ready."""

    def __init__(self, zoo_config: Path) -> None:
        self.server = ServerProcess("--config_path", str(zoo_config), wait_ready=False)
        self.seen: list[tuple[int, int]] = []  # (live, ready) statuses, in order
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            live = get(self.server.port, "/v2/health/live").status
            ready = get(self.server.port, "/v2/health/ready").status
            self.seen.append((live, ready))
            if ready == 200:
                break
            time.sleep(0.01)


@pytest.fixture(scope="module")
def startup(zoo_config: Path) -> Iterator[Startup]:
    watched = Startup(zoo_config)
    try:
        yield watched
    finally:
        watched.server.stop()


def test_live_answers_before_ready(startup: Startup) -> None:
    assert startup.seen[-1] == (200, 200), startup.seen[-1]
    loading = [s for s in startup.seen if s[1] != 200]
    assert loading, "the zoo loaded before the first probe: nothing observed"
    assert all(seen == (200, 503) for seen in loading), loading
    log = startup.server.log()
    assert log_index(log, r"listening on http://127\.0\.0\.1:\d+") < log_index(log, "loaded model")


def test_one_log_line_per_model_then_ready(startup: Startup, zoo_config: Path) -> None:
    log = startup.server.log()
    names = [entry["config"]["name"] for entry in json.loads(zoo_config.read_text())["model_config_list"]]
    ready_at = log_index(log, r"server ready: \d+ model\(s\) loaded")
    for name in names:
        versions = [1, 2, 3] if name == "versioned" else [1]
        for version in versions:
            lines = re.findall(rf"^.*loaded model {name} version {version} on CPU from .*$", log, re.MULTILINE)
            assert len(lines) == 1, (name, version, lines)
            assert " inputs " in lines[0] and log.index(lines[0]) < ready_at
    assert re.search(r"loaded model heavy version 1 on CPU from \S+: inputs x FP32 \(-1,3,64,64\)", log)
    assert f"server ready: {len(names)} model(s) loaded" in log
    assert '"GET /v2/health/ready" 200' not in log  # INFO does not log requests


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    held = Gate(tmp_path / "gate")
    try:
        yield held
    finally:
        held.open()  # never leave a node thread waiting out its cap


def gated_server(tmp_path: Path, gate: Gate, *extra: str) -> ServerProcess:
    return ServerProcess("--config_path", str(write_gated_repository(tmp_path, gate)), *extra)


def hold_requests(server: ServerProcess, gate: Gate) -> list[Conn]:
    """HELD requests, each running in the gate node (so in flight) until the test opens it."""
    conns = send_gated(server.port, HELD, timeout=WAIT)
    gate.wait_entered(HELD)
    return conns


def test_sigterm_finishes_in_flight_requests_and_exits_0(tmp_path: Path, gate: Gate) -> None:
    server = gated_server(tmp_path, gate)
    try:
        conns = hold_requests(server, gate)
        os.kill(server.proc.pid, signal.SIGTERM)
        wait_log(server, r"shutting down: finishing")
        assert refuses_connections(server.port)  # no new connections once shutting down
        assert server.proc.poll() is None  # the drain waits for the held requests...
        gate.open()
        replies = [conn.read() for conn in conns]
        for reply in replies:  # ...which then get their answers,
            assert_gated_ok(reply)
            assert reply.headers.get("connection") == "close"  # each sent after the signal
        assert all(conn.closed_by_peer() for conn in conns)
        assert exit_code(server) == 0
        log = server.log()
        assert re.search(r"shutting down: finishing (\d+) request\(s\)", log).group(1) == str(HELD), log
        assert log_index(log, "SIGTERM received") < log_index(log, "shutting down") < log_index(log, "server stopped")
        assert "unfinished" not in log
    finally:
        server.stop()


# A DEBUG server: request log lines, then SIGINT


@pytest.fixture(scope="module")
def debug_server(heavy_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess("--model_name", "heavy", "--model_path", str(heavy_repo), "--log_level", "DEBUG") as proc:
        yield proc


def test_debug_logs_each_request(debug_server: ServerProcess) -> None:
    assert get(debug_server.port, "/v2/health/live").status == 200
    assert get(debug_server.port, "/v2/models/nope").status == 404
    with Conn(debug_server.port) as conn:
        conn.send(heavy_request(1))
        assert_heavy_ok(conn.read(), 1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "/infer" not in debug_server.log():
        time.sleep(0.05)
    log = debug_server.log()
    assert re.search(r'\[DEBUG\]\[fastserve\.http\] 127\.0\.0\.1:\d+ "GET /v2/health/live" 200', log), log
    assert '"GET /v2/models/nope" 404' in log
    assert '"POST /v2/models/heavy/infer" 200' in log


def test_sigint_finishes_in_flight_requests_and_exits_0(tmp_path: Path, gate: Gate) -> None:
    server = gated_server(tmp_path, gate, "--log_level", "DEBUG")
    try:
        conns = hold_requests(server, gate)
        os.kill(server.proc.pid, signal.SIGINT)
        wait_log(server, r"finishing \d+ request")
        assert server.proc.poll() is None
        gate.open()
        for conn in conns:
            assert_gated_ok(conn.read())
        assert exit_code(server) == 0
        log = server.log()
        assert "SIGINT received" in log and "server stopped" in log and "Traceback" not in log
        assert re.search(r"finishing (\d+) request", log).group(1) == str(HELD), log
        assert '"POST /v2/models/gated/infer" 200' in log
    finally:
        server.stop()


def test_drain_is_bounded_by_shutdown_timeout(tmp_path: Path, gate: Gate) -> None:
    """Requests still running after --shutdown_timeout are cut off; the process still exits 0, promptly."""
    server = gated_server(tmp_path, gate, "--shutdown_timeout", "0.3")
    try:
        conns = hold_requests(server, gate)  # the gate stays shut: they can only be cut off
        os.kill(server.proc.pid, signal.SIGTERM)
        signalled = time.monotonic()
        outcomes = []
        for conn in conns:
            try:
                outcomes.append(conn.read().status)
            except (ConnectionError, OSError):
                outcomes.append(None)
        assert exit_code(server) == 0
        assert time.monotonic() - signalled < 10
        assert outcomes == [None] * HELD, outcomes  # cut off, and nobody got an error response
        log = server.log()
        assert f"closing {HELD} connection(s) with requests unfinished" in log, log
        assert "Traceback" not in log and "server stopped" in log
    finally:
        server.stop()


def test_a_second_signal_cuts_the_drain_short(tmp_path: Path, gate: Gate) -> None:
    server = gated_server(tmp_path, gate)  # shutdown_timeout: 30 s, and the gate stays shut
    try:
        conns = hold_requests(server, gate)
        os.kill(server.proc.pid, signal.SIGTERM)
        wait_log(server, r"shutting down: finishing")
        assert server.proc.poll() is None
        os.kill(server.proc.pid, signal.SIGTERM)
        assert exit_code(server, timeout=15) == 0
        for conn in conns:
            conn.close()
        log = server.log()
        assert "SIGTERM again: closing the remaining connections now" in log
        assert f"closing {HELD} connection(s) with requests unfinished" in log, log
    finally:
        server.stop()


# Shutdown while a model still compiles; a model that cannot load


def slow_model() -> ov.Model:
    """Sized to take 20 s to compile here: twice the exit time the test allows."""
    return slow_compile_model([1, 8], slow_compile_ops(20.0, (1, 8)))


def test_sigterm_while_loading_does_not_wait_for_the_compile(tmp_path: Path) -> None:
    save(slow_model(), tmp_path / "slow")
    server = ServerProcess("--model_name", "slow", "--model_path", str(tmp_path / "slow"), wait_ready=False)
    try:
        ready, live = get(server.port, "/v2/health/ready"), get(server.port, "/v2/health/live")
        assert (ready.status, ready.json()) == (503, {"ready": False})  # KServe's body, OVMS's status
        assert (live.status, live.json()) == (200, {"live": True})
        os.kill(server.proc.pid, signal.SIGTERM)
        assert exit_code(server, timeout=10) == 0
        log = server.log()
        assert "loaded model slow" not in log  # it exited before the compile finished, without waiting for it
        assert "model loading still running: exiting without waiting for it" in log
        assert "Traceback" not in log
    finally:
        server.stop()


def test_model_that_fails_to_load_stops_the_server(tmp_path: Path) -> None:
    save(add_model(), tmp_path / "add")
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.xml").write_text('<?xml version="1.0"?>\n<net name="broken" version="11">')
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_config_list": [{"config": {"name": "add", "base_path": "add"}},
                                                        {"config": {"name": "broken", "base_path": "broken"}}]}))
    server = ServerProcess("--config_path", str(config), wait_ready=False)
    try:
        code = exit_code(server)
        assert code not in (0, None) and code > 0, code
        log = server.log()
        errors = [line for line in log.splitlines() if "[ERROR]" in line]
        assert len(errors) == 1, log
        assert "model loading failed: model broken version 1: cannot read" in errors[0]
        assert str(tmp_path / "broken" / "1" / "model.xml") in errors[0]
        assert "server ready" not in log and "Traceback" not in log
    finally:
        server.stop()
