"""Does server-side batching pay off, and where? Measures it side by side, in one run.

Rules: builds its models with OpenVINO's opset (no downloads), talks to a real fastserve
process on 127.0.0.1 only, and bounds every load run in time (~10 s at most). The machine
may be shared, so every comparison runs its variants interleaved in the same run, and only
ratios measured that way are meant to be quoted.

    python bench/batching_probe.py            # in-process batch cost + server batched vs unbatched
    python bench/batching_probe.py --quick    # shorter runs

`build_batch_friendly_model()` is imported by the main benchmark (bench/run.py).
`run_load()` is the lean closed-loop client also used by bench/execution_probe.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov
import openvino.opset15 as ops

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 512


# Models


def build_mlp(widths: tuple[int, ...], features: int = FEATURES, name: str = "mlp") -> ov.Model:
    """Input ``x`` FP32 [-1,features]; MatMul+ReLU per width (no ReLU after the last); output ``y``.

    Weights from default_rng(0), scaled by 1/sqrt(fan_in), so activations stay O(1).
    """
    rng = np.random.default_rng(0)
    param = ops.parameter(ov.PartialShape([-1, features]), ov.Type.f32, name="x")
    param.output(0).get_tensor().set_names({"x"})
    h = param.output(0)
    fan_in = features
    for position, width in enumerate(widths):
        weight = (rng.standard_normal((fan_in, width)) / np.sqrt(fan_in)).astype(np.float32)
        h = ops.matmul(h, ops.constant(weight), False, False).output(0)
        if position < len(widths) - 1:
            h = ops.relu(h).output(0)
        fan_in = width
    h.get_tensor().set_names({"y"})
    return ov.Model([h], [param], name)


def build_batch_friendly_model() -> ov.Model:
    """Input ``x`` FP32 [-1,512] -> 1024 -> 1024 -> ``y`` FP32 [-1,16]: MatMul+ReLU, 1.6 M weights (6.3 MB).

    Weights-bound: at batch 1 the CPU mostly streams the weights, so batch 16 costs about
    twice batch 1 (see docs/batching.md), while the server's per-request work stays small.
    """
    return build_mlp((1024, 1024, 16), name="batch_friendly")


def save_model(model: ov.Model, root: Path, name: str) -> Path:
    """Write ``root/name/1/model.xml`` and return ``root/name``."""
    folder = root / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(model, folder / "1" / "model.xml", compress_to_fp16=False)
    return folder


def write_config(root: Path, entries: list[dict[str, object]]) -> Path:
    path = root / "config.json"
    path.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}, indent=1))
    return path


# Requests


def binary_request(model: str, array: np.ndarray, input_name: str = "x") -> bytes:
    """One keep-alive HTTP request with the input as a binary section (JSON outputs)."""
    header = json.dumps({"inputs": [{
        "name": input_name, "shape": list(array.shape), "datatype": "FP32",
        "parameters": {"binary_data_size": array.nbytes},
    }]}).encode()
    body = header + np.ascontiguousarray(array, dtype=np.float32).tobytes()
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


# Load client


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, counted responses only
    total: int = 0  # responses, warm-up included
    # Server CPU per response (us) over the whole run, warm-up included: robust to a shared
    # machine, unlike req/s. `loop_cpu_us` is the event-loop (main) thread alone.
    cpu_us: float = 0.0
    loop_cpu_us: float = 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    def describe(self) -> str:
        cpu = f"  server cpu {self.cpu_us:5.0f} us/req (loop {self.loop_cpu_us:4.0f})" if self.cpu_us else ""
        return (f"{self.rps:7.0f} req/s  p50 {self.quantile(0.5):6.2f} ms  p99 {self.quantile(0.99):6.2f} ms"
                f"{cpu}  ({self.ok} ok, {self.errors} errors)")


class _Client(asyncio.Protocol):
    """One closed-loop connection: send, read one response (Content-Length framed), repeat."""

    def __init__(self, payload: bytes, counted_from: float, until: float, result: LoadResult,
                 done: asyncio.Future[None]) -> None:
        self.payload, self.counted_from, self.until = payload, counted_from, until
        self.result, self.done = result, done
        self.buffer = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        start = head.find(b"content-length:") + 15
        stop = head.find(b"\r\n", start)
        length = int(head[start:stop if stop >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        now = time.perf_counter()
        self.buffer = self.buffer[end + 4 + length:]
        self.result.total += 1
        if self.sent >= self.counted_from:
            if head[9:12] == b"200":
                self.result.ok += 1
                self.result.latencies.append(now - self.sent)
            else:
                self.result.errors += 1
        if now < self.until:
            self._send()
        else:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(port: int, payloads: list[bytes], connections: int, seconds: float, warmup: float) -> LoadResult:
    loop = asyncio.get_running_loop()
    result = LoadResult(seconds=seconds)
    begin = time.perf_counter()
    counted_from, until = begin + warmup, begin + warmup + seconds
    waits = []
    for index in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        payload = payloads[index % len(payloads)]
        await loop.create_connection(lambda p=payload, d=done: _Client(p, counted_from, until, result, d),
                                     "127.0.0.1", port)
        waits.append(done)
    await asyncio.wait_for(asyncio.gather(*waits), warmup + seconds + 30)
    return result


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU of a process (or one of its threads), from /proc (Linux; 0 elsewhere)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(port: int, payloads: list[bytes], connections: int = 32, seconds: float = 4.0,
             warmup: float = 0.5, server_pid: int | None = None) -> LoadResult:
    """Closed loop: `connections` keep-alive connections each send their payload back to back."""
    before = (cpu_seconds(server_pid), cpu_seconds(server_pid, server_pid)) if server_pid else (0.0, 0.0)
    try:
        import uvloop

        result = uvloop.run(_load(port, payloads, connections, seconds, warmup))
    except ImportError:
        result = asyncio.run(_load(port, payloads, connections, seconds, warmup))
    if server_pid and result.total:
        result.cpu_us = (cpu_seconds(server_pid) - before[0]) / result.total * 1e6
        result.loop_cpu_us = (cpu_seconds(server_pid, server_pid) - before[1]) / result.total * 1e6
    return result


# Measurements


def in_process_costs(models: dict[str, ov.Model], sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> None:
    """Median us of request.infer() per batch size, sizes interleaved round by round."""
    core = ov.Core()
    requests = {}
    for name, model in models.items():
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        requests[name] = compiled.create_infer_request()
    print("in process, request.infer() median us (LATENCY hint):")
    print(f"{'model':16}" + "".join(f"{f'b{n}':>9}" for n in sizes) + f"{'b16/b1':>8}")
    for name, request in requests.items():
        shape = list(models[name].inputs[0].get_partial_shape())
        tail = [d.get_length() for d in shape[1:]]
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(7):
            for n in sizes:
                request.set_input_tensor(0, ov.Tensor(np.zeros([n, *tail], np.float32)))
                request.infer()
                started = time.perf_counter()
                request.infer()
                times[n].append((time.perf_counter() - started) * 1e6)
        median = {n: statistics.median(t) for n, t in times.items()}
        print(f"{name:16}" + "".join(f"{median[n]:9.0f}" for n in sizes) + f"{median[16] / median[1]:8.2f}")


BATCHING = {"max_batch_size": 16, "max_queue_delay_microseconds": 2000}


def through_server(seconds: float, rounds: int, connections: tuple[int, ...], only: str | None = None,
                   mode: str = "auto") -> None:
    """Each model served as `plain` (no batching keys) and `batched` in one server; runs interleaved.

    `heavy` also gets `forced`: a dynamic-spatial reshape, so the load probe cannot time it and
    batching stays on, to show what batching costs where the probe would have said no."""
    sys.path.insert(0, str(ROOT))
    from tests.modelzoo import heavy_model
    from tests.serverproc import ServerProcess

    models = {
        "friendly": (build_batch_friendly_model(), (1, FEATURES), ("plain", "batched")),
        "tiny": (build_mlp((16,), name="tiny"), (1, FEATURES), ("plain", "batched")),  # HTTP and Python dominate
        "heavy": (heavy_model(), (1, 3, 64, 64), ("plain", "batched", "forced")),  # cost grows with the batch
    }
    if only:
        models = {only: models[only]}
    extra: dict[str, dict[str, object]] = {"plain": {}, "batched": BATCHING,
                                           "forced": {**BATCHING, "shape": "(-1,3,-1,-1)"}}
    with tempfile.TemporaryDirectory(prefix="fastserve-batching-") as folder:
        root = Path(folder)
        entries: list[dict[str, object]] = []
        for name, (model, _, variants) in models.items():
            save_model(model, root / "models", name)
            entries += [{"name": f"{name}_{v}", "base_path": f"models/{name}", "execution_mode": mode, **extra[v]}
                        for v in variants]
        server = ServerProcess("--config_path", str(write_config(root, entries)))
        try:
            for line in server.log().splitlines():
                if "loaded model" in line:
                    print(line.split("loaded model ")[1].split(" on CPU")[0] + ": " + line.rsplit("; ", 1)[-1])
            for name, (_, shape, variants) in models.items():
                rng = np.random.default_rng(3)
                inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
                for count in connections:
                    runs: dict[str, list[LoadResult]] = {v: [] for v in variants}
                    for turn in range(rounds):  # alternate the order, so drift hits every variant alike
                        for variant in variants if turn % 2 == 0 else variants[::-1]:
                            payloads = [binary_request(f"{name}_{variant}", x) for x in inputs]
                            runs[variant].append(run_load(server.port, payloads, count, seconds,
                                                          server_pid=server.proc.pid))
                    best = {v: max(r, key=lambda x: x.rps) for v, r in runs.items()}
                    for variant in variants:
                        label = f"{name:9} {count:3d} conn" if variant == variants[0] else ""
                        ratio = ""
                        if variant != "plain":  # the median of the ratios of runs made side by side
                            pairs = [b.rps / max(a.rps, 1) for a, b in zip(runs["plain"], runs[variant], strict=True)]
                            ratio = f"  x{statistics.median(pairs):.2f} (paired median)"
                        cpu = statistics.median(r.cpu_us for r in runs[variant])
                        loop_cpu = statistics.median(r.loop_cpu_us for r in runs[variant])
                        print(f"{label:18} {variant:8} {best[variant].describe()}{ratio}"
                              f"  runs {[round(r.rps) for r in runs[variant]]};"
                              f" median server cpu {cpu:.0f} us/req (loop thread {loop_cpu:.0f})")
            for line in server.log().splitlines():
                if "from now on" in line:  # an inline model that turned out slow
                    print(line.split("[fastserve.models] ")[-1])
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, one round")
    parser.add_argument("--seconds", type=float, default=4.0, help="per load run (default 4, at most 10)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per variant (default 2)")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--only", choices=("friendly", "tiny", "heavy"), help="one model through the server")
    parser.add_argument("--connections", default="1,32", help="comma-separated (default 1,32)")
    parser.add_argument("--mode", default="auto", choices=("auto", "inline", "async"), help="execution_mode for all")
    args = parser.parse_args()
    seconds, rounds = (2.0, 1) if args.quick else (min(args.seconds, 10.0), args.rounds)
    if not args.skip_in_process:
        sys.path.insert(0, str(ROOT))
        from tests.modelzoo import heavy_model

        in_process_costs({
            "friendly": build_batch_friendly_model(),
            "mlp 512x512": build_mlp((512, 512, 16)),
            "mlp 2048x2048": build_mlp((2048, 2048, 16)),
            "heavy (conv)": heavy_model(),
        })
    print(f"\nthrough the server: closed loop, binary input, JSON output, {seconds:g} s runs, "
          f"best of {rounds} interleaved; the machine is shared, so compare ratios, not absolute req/s")
    through_server(seconds, rounds, tuple(int(c) for c in args.connections.split(",")), args.only, args.mode)


if __name__ == "__main__":
    main()
