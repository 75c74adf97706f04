"""Graceful shutdown cases test_lifecycle.py does not cover: idle keep-alive connections, a request
still arriving (half its body sent) when SIGTERM comes, pipelined requests queued behind a running
one, and SIGTERM while a hot reload compiles a new version.

Each test starts its own server (SIGTERM ends it) on a repository with the zoo's "heavy" model and
signals that process by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from tests.modelzoo import heavy_model, save, slow_compile_model
from tests.rawhttp import Conn, build
from tests.serverproc import ServerProcess

WAIT = 30.0


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("shutdown") / "heavy"
    save(heavy_model(), base, 1)
    return base


def start(base: Path, *extra: str) -> ServerProcess:
    return ServerProcess("--model_name", "heavy", "--model_path", str(base), *extra)


def heavy_body(batch: int) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def stop_and_wait(server: ServerProcess, sig: int = signal.SIGTERM) -> tuple[int, float]:
    """Signal our server by PID; its exit code and how long it took to exit."""
    signalled = time.monotonic()
    os.kill(server.proc.pid, sig)
    code = server.proc.wait(WAIT)
    return code, time.monotonic() - signalled


def test_idle_keep_alive_connections_close_at_once(heavy: Path) -> None:
    server = start(heavy)
    try:
        conns = [Conn(server.port) for _ in range(20)]
        for conn in conns:
            assert conn.request("GET", "/v2/health/live").status == 200  # now idle, kept alive
        code, took = stop_and_wait(server)
        assert code == 0 and took < 5, took  # nobody waits for idle clients (keep_alive_timeout is 60 s)
        assert all(conn.closed_by_peer(timeout=1) for conn in conns)
        assert "shutting down: finishing 0 request(s)" in server.log()
        assert "unfinished" not in server.log()
    finally:
        server.stop()


def test_request_half_sent_when_sigterm_comes_is_answered(heavy: Path) -> None:
    server = start(heavy)
    try:
        body, headers = heavy_body(2)
        request = build("POST", "/v2/models/heavy/infer", body, headers)
        half = len(request) - len(body) // 2
        with Conn(server.port, timeout=WAIT) as conn:
            conn.send(request[:half])
            time.sleep(0.2)
            os.kill(server.proc.pid, signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            conn.send(request[half:])
            reply = conn.read()
            assert reply.status == 200, reply.body
            assert reply.json()["outputs"][0]["shape"] == [2, 16]
            assert reply.headers.get("connection") == "close"
            assert conn.closed_by_peer()
        assert server.proc.wait(WAIT) == 0
        assert "shutting down: finishing 1 request(s)" in server.log()
    finally:
        server.stop()


def test_pipelined_requests_behind_a_running_one_are_all_answered(heavy: Path) -> None:
    server = start(heavy)
    try:
        with Conn(server.port, timeout=WAIT) as conn:
            for batch in (64, 1, 2):  # the first runs ~0.5-1 s; the other two wait behind it, in order
                body, headers = heavy_body(batch)
                conn.send(build("POST", "/v2/models/heavy/infer", body, headers))
            time.sleep(0.1)
            os.kill(server.proc.pid, signal.SIGTERM)
            replies = [conn.read() for _ in range(3)]
            assert [r.status for r in replies] == [200, 200, 200], [r.body for r in replies]
            assert [r.json()["outputs"][0]["shape"][0] for r in replies] == [64, 1, 2]
            assert replies[-1].headers.get("connection") == "close"
            assert conn.closed_by_peer()
        assert server.proc.wait(WAIT) == 0
        assert "shutting down: finishing 3 request(s)" in server.log()
    finally:
        server.stop()


def slow_model() -> ov.Model:
    return slow_compile_model([1, 3, 64, 64])


def test_sigterm_during_a_reload_compile_does_not_wait_for_it(tmp_path: Path) -> None:
    base = tmp_path / "heavy"
    save(heavy_model(), base, 1)
    server = start(base, "--file_system_poll_wait_seconds", "1")
    try:
        save(slow_model(), tmp_path / "staging", 2)
        (tmp_path / "staging" / "2").rename(base / "2")
        deadline = time.monotonic() + WAIT
        while "loading model heavy version 2" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "loading model heavy version 2" in server.log()
        code, took = stop_and_wait(server)
        assert code == 0 and took < 5, took
        log = server.log()
        assert "loaded model heavy version 2" not in log  # it left before the compile ended
        assert "model reloading still running: exiting without waiting for it" in log
        assert "Traceback" not in log and "server stopped" in log
    finally:
        server.stop()
