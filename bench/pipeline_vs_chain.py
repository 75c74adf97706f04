"""A two-model pipeline vs the client calling the two models one after the other.

Run from the repository root: `python bench/pipeline_vs_chain.py` (about 30 s; 127.0.0.1 only).
It builds its models in code, starts one fastserve on a free port with a config.json holding
both models and a pipeline joining them, checks that both ways give the same answer, then
runs each way for --seconds (in slices taking turns, so drifting load on a shared machine hits
both alike) with --connections keep-alive connections from a threaded client, prints the table
and the pipeline/chain ratios, and writes them to bench/RESULTS-pipelines.md.

Both ways send binary tensors and ask for binary outputs. The chain client reads model A's
output bytes and sends them straight back as model B's input (no decoding to numpy), which is
the cheapest a client can do.

Scenarios:
- small: FP32 [1,10] -> x*2+1 -> @ W[10,10]: both models run inline in ~30 us; the round trip
  and the codec dominate.
- image: FP32 [1,3,224,224] -> x*2 (588 KiB intermediate) -> mean over H,W: the chain moves
  the intermediate tensor over the socket twice, the pipeline not at all.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov
import openvino.opset15 as ops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import read_response  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS-pipelines.md"


def _param(name: str, shape: list[int]) -> ov.Output:
    out = ops.parameter(shape, ov.Type.f32, name=name).output(0)
    out.get_tensor().set_names({name})
    return out


def _named(node: Any, name: str) -> ov.Output:
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def first_model(shape: list[int], scale: float, shift: float) -> ov.Model:
    x = _param("x", shape)
    y = _named(ops.add(ops.multiply(x, ops.constant(np.float32(scale))), ops.constant(np.float32(shift))), "y")
    return ov.Model([y], [x.get_node()], "first")


def matmul_model() -> ov.Model:
    x = _param("x", [1, 10])
    weights = np.random.default_rng(0).standard_normal((10, 10)).astype(np.float32)
    return ov.Model([_named(ops.matmul(x, ops.constant(weights), False, False), "y")], [x.get_node()], "second")


def mean_model() -> ov.Model:
    x = _param("x", [1, 3, 224, 224])
    axes = ops.constant(np.array([2, 3], dtype=np.int64))
    return ov.Model([_named(ops.reduce_mean(x, axes, keep_dims=False), "y")], [x.get_node()], "mean")


SCENARIOS: dict[str, tuple[list[int], Any, Any]] = {
    "small": ([1, 10], lambda: first_model([1, 10], 2.0, 1.0), matmul_model),
    "image": ([1, 3, 224, 224], lambda: first_model([1, 3, 224, 224], 2.0, 0.0), mean_model),
}


def write_repository(root: Path) -> Path:
    models, pipelines = [], []
    for name, (_, first, second) in SCENARIOS.items():
        for suffix, build in (("a", first), ("b", second)):
            model = f"{name}_{suffix}"
            ov.save_model(build(), root / model / "1" / "model.xml", compress_to_fp16=False)
            models.append({"config": {"name": model, "base_path": model}})
        pipelines.append({
            "name": f"{name}_pipeline", "inputs": ["x"],
            "nodes": [
                {"name": "a", "type": "DL model", "model_name": f"{name}_a",
                 "inputs": [{"x": {"node_name": "request", "data_item": "x"}}],
                 "outputs": [{"data_item": "y", "alias": "y"}]},
                {"name": "b", "type": "DL model", "model_name": f"{name}_b",
                 "inputs": [{"x": {"node_name": "a", "data_item": "y"}}],
                 "outputs": [{"data_item": "y", "alias": "y"}]},
            ],
            "outputs": [{"y": {"node_name": "b", "data_item": "y"}}],
        })
    path = root / "config.json"
    path.write_text(json.dumps({"model_config_list": models, "pipeline_config_list": pipelines}))
    return path


# Client: raw sockets, pre-built heads, binary in and out


def binary_head(shape: list[int], size: int) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": shape,
                                   "parameters": {"binary_data_size": size}}],
                       "parameters": {"binary_data_output": True}}).encode()


def request(model: str, head: bytes, data: bytes | memoryview) -> list[bytes | memoryview]:
    start = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
             f"Inference-Header-Content-Length: {len(head)}\r\nContent-Length: {len(head) + len(data)}\r\n\r\n")
    return [start.encode() + head, data]


def exchange(sock: socket.socket, parts: list[bytes | memoryview], pending: bytearray) -> memoryview:
    """Send one request, return the binary output bytes of the response."""
    sock.sendmsg(parts)
    status, body, headers = read_response(sock, pending)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return memoryview(body)[int(headers["inference-header-content-length"]):]


class Way:
    """One way to get the answer: the pipeline (one request) or the client's chain (two)."""

    def __init__(self, scenario: str, chained: bool, x: np.ndarray) -> None:
        self.scenario, self.chained = scenario, chained
        self.data = x.tobytes()
        self.first = binary_head(list(x.shape), len(self.data))
        self.model = f"{scenario}_a" if chained else f"{scenario}_pipeline"
        self.second_head: bytes | None = None

    def call(self, sock: socket.socket, pending: bytearray) -> memoryview:
        out = exchange(sock, request(self.model, self.first, self.data), pending)
        if not self.chained:
            return out
        if self.second_head is None:
            shape = SCENARIOS[self.scenario][0]
            self.second_head = binary_head(shape, len(out))
        return exchange(sock, request(f"{self.scenario}_b", self.second_head, out), pending)


def run_load(port: int, way: Way, seconds: float, connections: int) -> list[float]:
    latencies: list[list[float]] = [[] for _ in range(connections)]
    start_at = time.perf_counter() + 0.2
    stop_at = start_at + seconds

    def worker(index: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = bytearray()
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                way.call(sock, pending)
                ended = time.perf_counter()
                if began >= start_at and ended <= stop_at:
                    latencies[index].append(ended - began)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [t for per in latencies for t in per]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per way and scenario")
    parser.add_argument("--connections", type=int, default=2, help="keep-alive client connections")
    parser.add_argument("--slices", type=int, default=4, help="turns the two ways take within a scenario")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = write_repository(Path(tmp))
        with ServerProcess("--config_path", str(config), ready_timeout=120) as server:
            for scenario, (shape, _, _) in SCENARIOS.items():
                x = np.random.default_rng(1).random(shape, dtype=np.float32)
                ways = [Way(scenario, False, x), Way(scenario, True, x)]
                with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                    answers = [np.frombuffer(w.call(sock, bytearray()), np.float32) for w in ways]
                np.testing.assert_allclose(answers[0], answers[1], rtol=1e-5, atol=1e-5)
                done: list[list[float]] = [[], []]
                for _ in range(args.slices):
                    for index, way in enumerate(ways):
                        done[index] += run_load(server.port, way, args.seconds / args.slices, args.connections)
                for way, latencies in zip(ways, done, strict=True):
                    rows.append((scenario, way, len(latencies) / args.seconds, float(np.median(latencies) * 1e3),
                                 float(np.percentile(latencies, 99) * 1e3)))
    elapsed = time.monotonic() - began
    report = render(rows, args, elapsed, load_before, os.getloadavg()[0])
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
    return 0


def render(rows: list, args: argparse.Namespace, elapsed: float, before: float, after: float) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "## Two-model pipeline vs the client chaining the two models",
        "",
        f"Written by `python bench/pipeline_vs_chain.py` on {now}, {elapsed:.0f} s in all: {args.seconds:g} s per way "
        f"and scenario in {args.slices} slices taking turns, {args.connections} keep-alive connections from a "
        f"threaded client, binary tensors both ways, 127.0.0.1. Machine: {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, OpenVINO {ov.__version__}. Load average before/after: "
        f"{before:.2f} / {after:.2f} (the machine is shared; the ratios are what counts).",
        "",
        "Both ways were checked to give the same answer first. A chain row is one model A request whose output "
        "bytes go straight back as model B's input, then the model B request (the client does not decode them).",
        "",
        "| scenario | way | requests/s | p50 latency | p99 latency |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for scenario, way, rate, p50, p99 in rows:
        label = "client chain (2 requests)" if way.chained else "pipeline (1 request)"
        lines.append(f"| {scenario} | {label} | {rate:.1f} | {p50:.2f} ms | {p99:.2f} ms |")
    lines += ["", "Ratios (pipeline / client chain):", ""]
    for index in range(0, len(rows), 2):
        pipe, chain = rows[index], rows[index + 1]
        lines.append(f"- {pipe[0]}: requests/s {pipe[2] / chain[2]:.2f}x; p50 latency {pipe[3] / chain[3]:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
