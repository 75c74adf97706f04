"""--rest_workers in real processes: two workers share one port (picked with --rest_port 0), a
worker killed with SIGKILL is replaced while the port keeps answering, SIGTERM to the parent drains
every worker and exits 0, a killed parent takes its workers with it, and start-up failures stop
the server with the right exit code.

Worker PIDs come from the parent's log ("worker N started (pid P)") and are checked to be the
parent's children in /proc; every signal goes to a PID of a process these tests started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastserve.workers import reserve
from tests.gates import Gate, assert_gated_ok, gated_request, write_gated_repository
from tests.modelzoo import add_model, save
from tests.rawhttp import Conn, get, post_json
from tests.serverproc import ServerProcess

WAIT = 60.0
ADD_BODY = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10},
                       {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [2.0] * 10}]}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workers")
    save(add_model(), root / "add", 1)
    path = root / "config.json"
    path.write_text(json.dumps({"model_config_list": [{"config": {"name": "add", "base_path": "add"}}]}))
    return path


def start(config: Path, *extra: str) -> ServerProcess:
    server = ServerProcess("--config_path", str(config), "--rest_workers", "2", "--log_level", "DEBUG", *extra)
    wait_log(server, r"server ready: 2 workers")
    return server


def wait_log(server: ServerProcess, pattern: str, count: int = 1, timeout: float = WAIT) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, server.log())
        if len(found) >= count:
            return found
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise AssertionError(f"{pattern!r} x{count} not in the log:\n{server.log()}")
        time.sleep(0.05)


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """The latest PID of each worker index, from the parent's log."""
    return {int(i): int(p) for i, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", server.log())}


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def served_by(server: ServerProcess, requests: int) -> dict[str, int]:
    """Send `requests` infers, each on a new connection; count the workers that logged them."""
    before = server.log()
    for _ in range(requests):
        reply = post_json(server.port, "/v2/models/add/infer", ADD_BODY)
        assert reply.status == 200, reply.body
        sums = {o["name"]: o["data"] for o in reply.json()["outputs"]}["sum"]
        assert sums == [3.0] * 10
    line = r"\[worker (\d+)\] \S+ \"POST /v2/models/add/infer\" 200"
    deadline = time.monotonic() + WAIT  # each worker writes its log line after its answer: wait for all
    while len(re.findall(line, server.log()[len(before):])) < requests and time.monotonic() < deadline:
        time.sleep(0.01)
    new = server.log()[len(before):]
    counts: dict[str, int] = {}
    for worker in re.findall(line, new):
        counts[worker] = counts.get(worker, 0) + 1
    assert sum(counts.values()) == requests, new
    return counts


@pytest.fixture(scope="module")
def pair(config: Path) -> Iterator[ServerProcess]:
    server = start(config)
    try:
        yield server
    finally:
        server.stop()


def test_workers_share_one_port_picked_by_the_parent(pair: ServerProcess) -> None:
    ports = set(re.findall(r"\[worker \d\] listening on http://127\.0\.0\.1:(\d+)", pair.log()))
    assert ports == {str(pair.port)}
    assert f"2 workers sharing port {pair.port} (SO_REUSEPORT)" in pair.log()
    pids = worker_pids(pair)
    assert sorted(pids) == [0, 1] and all(parent_of(pid) == pair.proc.pid for pid in pids.values())
    counts = served_by(pair, 40)  # the kernel hashes each new connection to one of the two sockets
    assert set(counts) == {"0", "1"}, counts


def test_killed_worker_is_replaced_while_the_port_keeps_answering(pair: ServerProcess) -> None:
    victim = worker_pids(pair)[0]
    assert parent_of(victim) == pair.proc.pid
    os.kill(victim, signal.SIGKILL)
    wait_log(pair, rf"worker 0 \(pid {victim}\) exited with signal SIGKILL: starting a new one")
    for _ in range(20):  # the survivor takes every new connection meanwhile
        assert get(pair.port, "/v2/health/ready").status == 200
    replacement = int(wait_log(pair, r"worker 0 started \(pid (\d+)\)", count=2)[-1])
    assert replacement != victim and parent_of(replacement) == pair.proc.pid
    wait_log(pair, rf"worker 0 \(pid {replacement}\) ready")
    assert not alive(victim)
    assert set(served_by(pair, 40)) == {"0", "1"}  # the new worker serves too


# Connections opened at most while waiting for both workers to hold a request: the kernel spreads
# SO_REUSEPORT connections by hash, so a few may land on the same worker; 64 all on one is ~1e-19.
MAX_CONNS = 64


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_parent_drains_every_worker_and_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    gate = Gate(tmp_path / "gate")
    server = start(write_gated_repository(tmp_path, gate))
    conns: list[Conn] = []
    try:
        pids = worker_pids(server)
        # One connection per worker (told by the worker's own request log line for the client's
        # port), each with a request held in a gate node until the test opens it: every worker has
        # one in flight when the signal comes, however fast the CPU is.
        by_worker: dict[str, Conn] = {}
        while len(by_worker) < len(pids):
            assert len(conns) < MAX_CONNS, f"{len(conns)} connections reached only workers {sorted(by_worker)}"
            conn = Conn(server.port, timeout=WAIT)
            conns.append(conn)
            assert conn.request("GET", "/v2/health/live").status == 200
            client_port = conn.sock.getsockname()[1]
            (index,) = wait_log(server, rf"\[worker (\d+)\] 127\.0\.0\.1:{client_port} \"GET /v2/health/live\"")
            by_worker.setdefault(index, conn)
        for conn in by_worker.values():
            conn.send(gated_request())
        gate.wait_entered(len(pids))
        assert gate.entered_pids() == set(pids.values())
        os.kill(server.proc.pid, sig)
        wait_log(server, r"\[worker \d\] shutting down: finishing", count=len(pids))
        assert server.proc.poll() is None and all(alive(pid) for pid in pids.values())  # draining, not gone
        gate.open()
        for conn in by_worker.values():
            assert_gated_ok(conn.read())
        for conn in conns:
            conn.close()
        assert server.proc.wait(WAIT) == 0
        log = server.log()
        assert f"{sig.name} received: stopping 2 worker(s)" in log
        for index, pid in pids.items():
            assert f"worker {index} (pid {pid}) exited with code 0" in log
            assert len(re.findall(rf"\[worker {index}\] {sig.name} received", log)) == 1  # forwarded once
            assert not alive(pid)
            finishing = re.search(rf"\[worker {index}\] shutting down: finishing (\d+) request", log)
            assert finishing and int(finishing.group(1)) >= 1, log  # each worker had one in flight
        assert "all workers stopped" in log and "Traceback" not in log and "unfinished" not in log
    finally:
        gate.open()
        server.stop()


def test_a_killed_parent_takes_its_workers_with_it(config: Path) -> None:
    server = start(config)
    try:
        pids = list(worker_pids(server).values())
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids)
    finally:
        server.stop()


def test_a_worker_failing_at_start_stops_the_server_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.xml").write_text('<?xml version="1.0"?>\n<net name="broken" version="11">')
    server = ServerProcess("--model_name", "broken", "--model_path", str(tmp_path / "broken"),
                           "--rest_workers", "2", wait_ready=False)
    try:
        assert server.proc.wait(WAIT) == 2
        log = server.log()
        assert re.search(r"worker \d \(pid \d+\) exited with code 2 before it was ready: stopping", log), log
        assert "model loading failed: model broken version 1: cannot read" in log
        assert "starting a new one" not in log and "Traceback" not in log
    finally:
        server.stop()


def test_a_port_in_use_exits_1_before_any_worker_starts(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "fastserve", "--config_path", str(config), "--rest_workers", "2",
                               "--rest_bind_address", "127.0.0.1", "--rest_port", str(port)],
                              capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in done.stderr
    assert "worker 0 started" not in done.stderr


def test_reserve_gives_one_port_to_every_address_and_refuses_a_taken_one() -> None:
    reserved, port = reserve("127.0.0.1, 127.0.0.2", 0)
    try:
        assert port > 0 and [s.getsockname() for s in reserved] == [("127.0.0.1", port), ("127.0.0.2", port)]
        with socket.socket() as worker:  # what each worker does: same port, SO_REUSEPORT
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            with pytest.raises(OSError):  # a second fastserve (or anything) probing the port finds it taken
                reserve("127.0.0.1", port)
    finally:
        for sock in reserved:
            sock.close()
