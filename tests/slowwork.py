"""Work of a known duration on any CPU: a "spin" model whose cost per row is measured once per
session in this process, and the number of rows that makes one inference take a given time.

Tests that need a request to be slow (a queue that fills, a timeout that fires, an inference
still running when something else happens) size it here, in seconds, instead of in images of a
model assumed to take ~10 ms each: on a 3x faster CPU the rows grow 3x and the request still
takes as long. Targets are at least 10x the server timer they must beat, since the server runs
the rows under other load than the measurement (more streams, other tests' servers).

The same for a model that takes a given time to compile (slow_compile_ops), for tests that must
catch the server in the middle of a load.

FASTSERVE_TEST_SHRINK=N divides the spin model's layers (and heavy's channels, tests/modelzoo.py)
by N: each row then costs ~N times less, which stands in for an N times faster CPU; the
measurement sees it and sends N times more rows. The fast run of issue 11 is the suite with it.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from tests.modelzoo import SHRINK, slow_compile_model
from tests.rawhttp import build

WIDTH = 512  # one 512x512 FP32 weight (1 MiB) shared by every layer: cheap to save, stays in cache
LAYERS = max(1, 256 // SHRINK)  # ~1.7 ms a row on the 2-core VM of 2026-12
MIN_ROWS = 16
MAX_ROWS = 65536  # 128 MiB of input at WIDTH 512: a cap for a machine far faster than any today


def spin_model(layers: int = LAYERS, width: int = WIDTH) -> ov.Model:
    """x FP32 [-1,width] -> `layers` times h = tanh(h @ W) -> y = mean over the row, FP32 [N,1]."""
    x = ops.parameter(ov.PartialShape([-1, width]), ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    weight = np.random.default_rng(7).standard_normal((width, width)).astype(np.float32) / math.sqrt(width)
    constant = ops.constant(weight)
    h = x.output(0)
    for _ in range(layers):
        h = ops.tanh(ops.matmul(h, constant, False, False)).output(0)
    y = ops.reduce_mean(h, ops.constant(np.array([1], np.int64)), keep_dims=True).output(0)
    y.get_tensor().set_names({"y"})
    return ov.Model([y], [x], "spin")


@functools.cache
def seconds_per_row(layers: int = LAYERS, width: int = WIDTH) -> float:
    """One row's inference time on this machine now: the best of 3 runs of >= 50 ms each.

    The best, not the mean: a stall during the measurement must not make the rows too few.
    Compiled with OpenVINO's defaults (all cores for one request), which is at least as fast
    per request as the server's streams, so the server's inference of the rows takes no less.
    """
    compiled = ov.Core().compile_model(spin_model(layers, width), "CPU")
    request = compiled.create_infer_request()
    rows = 64
    while True:
        x = np.ones((rows, width), np.float32)
        request.infer({"x": x})  # warm-up at this shape
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            request.infer({"x": x})
            runs.append(time.perf_counter() - started)
        if min(runs) >= 0.05 or rows >= MAX_ROWS:
            return min(runs) / rows
        rows = min(rows * 4, MAX_ROWS)


def spin_rows(seconds: float, layers: int = LAYERS, width: int = WIDTH) -> int:
    """Rows that make one inference of the spin model take about `seconds` here (floor and cap)."""
    return max(MIN_ROWS, min(MAX_ROWS, math.ceil(seconds / seconds_per_row(layers, width))))


def spin_input(rows: int, width: int = WIDTH) -> np.ndarray:
    return np.random.default_rng(rows).random((rows, width), dtype=np.float32)


def spin_body(rows: int, width: int = WIDTH) -> tuple[bytes, dict[str, str]]:
    """A binary-extension infer body (x FP32 [rows,width]) and its headers."""
    header = (b'{"inputs":[{"name":"x","shape":[%d,%d],"datatype":"FP32","parameters":{"binary_data_size":%d}}]}'
              % (rows, width, rows * width * 4))
    return header + spin_input(rows, width).tobytes(), {
        "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def spin_request(rows: int, model: str = "spin", version: int | None = None) -> bytes:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return build("POST", path, *spin_body(rows))


@functools.cache
def compile_seconds_per_op(shape: tuple[int, ...]) -> float:
    """The CPU plugin's compile time per op of slow_compile_model (it grows about linearly)."""
    ops_count = 100
    model = slow_compile_model(list(shape), ops_count)
    started = time.perf_counter()
    ov.Core().compile_model(model, "CPU")
    return (time.perf_counter() - started) / ops_count


def slow_compile_ops(seconds: float, shape: tuple[int, ...]) -> int:
    """ops_count for slow_compile_model(shape, ...) to take about `seconds` to compile here."""
    return max(100, min(50_000, math.ceil(seconds / compile_seconds_per_op(shape))))
