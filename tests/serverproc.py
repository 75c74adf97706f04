"""Starts the real fastserve process on 127.0.0.1 for end-to-end tests, and stops it by PID.

The server binds port 0 and logs the port it got, so parallel runs never collide. gRPC has no
"pick a free port" (OVMS's --port 0 means no gRPC server), so `grpc=True` picks a free port
here and passes it; the server refuses a busy one loudly, and then one more port is tried.
`grpc_transport` picks --grpc_transport (h2 or grpcio; None: the server's default).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
GRPC_LISTENING = "listening on grpc://127.0.0.1:"
GRPC_BUSY = "cannot start the gRPC server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, ready_timeout: float = 60.0, wait_ready: bool = True, grpc: bool = False,
                 env: dict[str, str] | None = None, grpc_transport: str | None = None) -> None:
        self.env = env  # the whole environment of the server process; None: ours
        self.grpc_transport = grpc_transport  # None: the server's default
        for attempt in range(2):
            self.grpc_port = free_port() if grpc else 0
            self._start(args, ready_timeout)
            if not grpc or GRPC_BUSY not in self.log() or attempt:
                break
            self.stop()  # someone took the port between our check and the server's bind
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.grpc_host = f"127.0.0.1:{self.grpc_port}"
        if grpc:
            self._wait_grpc(ready_timeout)
        if wait_ready:
            self.wait_ready(ready_timeout)

    def _start(self, args: tuple[str, ...], ready_timeout: float) -> None:
        self.log_file = Path(tempfile.mkstemp(prefix="fastserve-", suffix=".log")[1])
        self._log = self.log_file.open("wb")
        command = [sys.executable, "-m", "fastserve", "--rest_bind_address", "127.0.0.1"]
        if "--rest_port" not in args:
            command += ["--rest_port", "0"]
        if self.grpc_port:
            command += ["--port", str(self.grpc_port), "--grpc_bind_address", "127.0.0.1"]
            if self.grpc_transport is not None:
                command += ["--grpc_transport", self.grpc_transport]
        self.proc = subprocess.Popen([*command, *args], stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        try:
            self.port = self._wait_port(ready_timeout)
        except RuntimeError:
            if not (self.grpc_port and GRPC_BUSY in self.log()):
                raise
            self.port = 0

    def _wait_grpc(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while GRPC_LISTENING + str(self.grpc_port) not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fastserve did not serve gRPC on {self.grpc_port}:\n{self.log()}")
            time.sleep(0.05)

    def _wait_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log())
            if found:
                return int(found.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"fastserve exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fastserve did not listen within {timeout} s:\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fastserve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"fastserve not ready within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal our own process (by PID) and wait; kill it if it does not exit in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
