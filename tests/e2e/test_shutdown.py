"""Graceful shutdown cases test_lifecycle.py does not cover: idle keep-alive connections, a request
still arriving (half its body sent) when SIGTERM comes, pipelined requests queued behind a running
one, and SIGTERM while a hot reload compiles a new version.

Each test starts its own server (SIGTERM ends it) and signals that process by its PID. The running
request is held in the gate node of tests/gates.py until the test opens it, and the compile is
sized by measurement (tests/slowwork.py): nothing here depends on how fast this CPU is.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.gates import Gate, assert_gated_ok, gated_request, write_gated_repository
from tests.modelzoo import save, slow_compile_model
from tests.netstate import wait_read_by_server
from tests.rawhttp import Conn, Reply, build
from tests.serverproc import ServerProcess
from tests.slowwork import slow_compile_ops

WAIT = 30.0
ADD_BODY = json.dumps({"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
                                  {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10}]}).encode()
ADD_REQUEST = build("POST", "/v2/models/add/infer", ADD_BODY)


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path / "gate")


def start(config: Path, *extra: str) -> ServerProcess:
    return ServerProcess("--config_path", str(config), *extra)


def assert_add_ok(reply: Reply) -> None:
    assert reply.status == 200, reply.body
    outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
    assert outputs["sum"] == [float(v + 1) for v in range(10)]


def wait_logged(server: ServerProcess, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in server.log():
        assert time.monotonic() < deadline and server.proc.poll() is None, server.log()
        time.sleep(0.01)


def wait_refused(port: int) -> None:
    """Until a new connection is refused: the listener is closed."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.01)
    raise AssertionError("the server still accepts connections")


def stop_and_wait(server: ServerProcess, sig: int = signal.SIGTERM) -> tuple[int, float]:
    """Signal our server by PID; its exit code and how long it took to exit."""
    signalled = time.monotonic()
    os.kill(server.proc.pid, sig)
    code = server.proc.wait(WAIT)
    return code, time.monotonic() - signalled


def test_idle_keep_alive_connections_close_at_once(tmp_path: Path, gate: Gate) -> None:
    server = start(write_gated_repository(tmp_path, gate))
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


def test_request_half_sent_when_sigterm_comes_is_answered(tmp_path: Path, gate: Gate) -> None:
    server = start(write_gated_repository(tmp_path, gate))
    try:
        half = len(ADD_REQUEST) - len(ADD_BODY) // 2
        with Conn(server.port, timeout=WAIT) as conn:
            conn.send(ADD_REQUEST[:half])
            wait_read_by_server([conn.sock])  # the server is parsing it
            os.kill(server.proc.pid, signal.SIGTERM)
            wait_logged(server, "shutting down: finishing 1 request(s)")
            wait_refused(server.port)
            conn.send(ADD_REQUEST[half:])
            reply = conn.read()
            assert_add_ok(reply)
            assert reply.headers.get("connection") == "close"
            assert conn.closed_by_peer()
        assert server.proc.wait(WAIT) == 0
    finally:
        server.stop()


def test_pipelined_requests_behind_a_running_one_are_all_answered(tmp_path: Path, gate: Gate) -> None:
    server = start(write_gated_repository(tmp_path, gate))
    try:
        with Conn(server.port, timeout=WAIT) as conn:
            conn.send(gated_request() + ADD_REQUEST + ADD_REQUEST)  # the first is held; two wait behind it
            gate.wait_entered(1)
            wait_read_by_server([conn.sock])
            os.kill(server.proc.pid, signal.SIGTERM)
            wait_logged(server, "shutting down: finishing 3 request(s)")
            assert server.proc.poll() is None  # it waits for them
            gate.open()
            replies = [conn.read() for _ in range(3)]
            assert_gated_ok(replies[0])
            assert_add_ok(replies[1])
            assert_add_ok(replies[2])
            assert replies[-1].headers.get("connection") == "close"
            assert conn.closed_by_peer()
        assert server.proc.wait(WAIT) == 0
    finally:
        server.stop()


def test_sigterm_during_a_reload_compile_does_not_wait_for_it(tmp_path: Path) -> None:
    # Version 2 is sized to take 10 s to compile here: twice the exit time allowed.
    base = tmp_path / "slow"
    save(slow_compile_model([1, 8], 100), base, 1)
    server = ServerProcess("--model_name", "slow", "--model_path", str(base), "--file_system_poll_wait_seconds", "1")
    try:
        save(slow_compile_model([1, 8], slow_compile_ops(10.0, (1, 8))), tmp_path / "staging", 2)
        (tmp_path / "staging" / "2").rename(base / "2")
        wait_logged(server, "loading model slow version 2")
        code, took = stop_and_wait(server)
        assert code == 0 and took < 5, took
        log = server.log()
        assert "loaded model slow version 2" not in log  # it left before the compile ended
        assert "model reloading still running: exiting without waiting for it" in log
        assert "Traceback" not in log and "server stopped" in log
    finally:
        server.stop()
