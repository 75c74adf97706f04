"""A pipeline custom node that holds each request until the test opens a gate: in-flight work
whose length the test decides, whatever the CPU's speed.

Served as a fastserve custom node library (by file path; see tests/gates.py for the test side).
params:
  dir   a folder the test owns. Each call first writes ``entered-<pid>-<n>`` there (so the test
        knows the request is running, and in which worker), then waits until ``dir/open`` exists.
inputs:  x FP32, any shape
outputs: y FP32, x unchanged
The wait is capped (CAP_S) so a test that dies without opening the gate leaves no stuck thread.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import numpy as np

CAP_S = 120.0
POLL_S = 0.002
_calls = itertools.count()


def inputs_info(params: dict[str, str]) -> dict[str, tuple[str, list[int] | None]]:
    return {"x": ("FP32", None)}


def outputs_info(params: dict[str, str]) -> dict[str, tuple[str, list[int] | None]]:
    return {"y": ("FP32", None)}


def execute(inputs: dict[str, np.ndarray], params: dict[str, str]) -> dict[str, np.ndarray]:
    folder = Path(params["dir"])
    (folder / f"entered-{os.getpid()}-{next(_calls)}").touch()
    deadline = time.monotonic() + CAP_S
    while not (folder / "open").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(POLL_S)
    return {"y": np.array(inputs["x"], dtype=np.float32)}
