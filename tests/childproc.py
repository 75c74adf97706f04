"""Local servers the tests run in child processes (moto, the GCS emulator, Azurite, tests/azfiles.py):
waiting until one listens on 127.0.0.1, and stopping it by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, name: str) -> None:
    """Return once 127.0.0.1:port accepts a connection; RuntimeError if `proc` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen within {timeout} s") from None
            time.sleep(0.05)


def terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s; a process that already ended is left alone."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
