"""Processes the benchmark starts: servers on 127.0.0.1, their CPU time, and stopping them by PID.

Rules: every process is started here, remembered by PID and stopped by that PID (SIGTERM, then
SIGKILL after a grace period); nothing is ever looked up or killed by name. CPU time comes from
/proc/<pid>/stat (utime + stime of every thread, plus any child processes), so a server's CPU
per request covers its event loop and OpenVINO's inference threads alike.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
# Model compilation (two ResNet-50s and a KServe import) takes ~20 s on 2 busy cores.
READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The peers import openvino without fastserve's guard (fastserve/telemetry.py); openvino's usage
# reporting stands down in CI, which is what a benchmark run is.
PEER_ENV = {"CI": os.environ.get("CI", "true")}
# The prototype compiles the models it runs async (ResNet-50) with PERFORMANCE_HINT=THROUGHPUT
# unless OV_HINT says otherwise (../shared/peers/ovrun.py); every server here gets LATENCY, the
# default OVMS injects and fastserve keeps, so a figure compares servers, not compile hints.
PROTO_ENV = {"OV_HINT": "LATENCY"}


class Server:
    """One server process: started with a log file, ready once its health URL answers 200."""

    def __init__(self, name: str, command: list[str], log_dir: Path, port: int | None = None,
                 ready_path: str = "/v2/health/ready", env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **PEER_ENV, **(env or {})}, cwd=cwd)
        self.pid = self.proc.pid
        self.port = port if port is not None else self._wait_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = 0  # set by whoever started it with --port (bench/run.py: perf_analyzer -i grpc)
        self._wait_ready(ready_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")

    def _wait_port(self) -> int:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log())
            if found:
                return int(found.group(1))
            self._check_alive()
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen within {READY_TIMEOUT_S} s")

    def _wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready within {READY_TIMEOUT_S} s:\n{self.log()[-3000:]}")

    def cpu_seconds(self) -> float:
        return process_tree_cpu(self.pid)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM our own PID, wait, then SIGKILL that PID if it is still there."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds; 0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces; fields restart after ")"
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree_cpu(pid: int) -> float:
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += process_cpu(current)
        stack += children(current)
    return total


def read_response(sock: socket.socket, pending: bytearray) -> tuple[int, bytes, dict[str, str]]:
    """One Content-Length framed response: (status, body, lower-cased headers); bytes past it stay in `pending`."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        pending += chunk
    end = pending.index(b"\r\n\r\n")
    lines = bytes(pending[:end]).decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    del pending[: end + 4]
    while len(pending) < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed mid-body")
        pending += chunk
    body = bytes(pending[:length])
    del pending[:length]
    return int(lines[0].split()[1]), body, headers
