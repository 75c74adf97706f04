"""Soak: N minutes of mixed valid and invalid requests at saturation; no valid request may fail and
the server's memory must not grow.

Run from the repository root: `python bench/soak.py [--minutes 10] [--connections 24]` (127.0.0.1
only, bounded by --minutes). It builds three zoo models (add: tiny, inline; dynamic: any 2-D
shape; heavy: five convolutions, async), starts one fastserve (metrics on, reload polling on)
and keeps --connections keep-alive connections busy in a closed loop from one uvloop client.
Each request is drawn from MIX: valid ones (JSON and binary inference checked against numpy,
metadata, health, /metrics, GET /v1/config, POST /v1/config/reload) and invalid ones (bad JSON,
unknown model or version, wrong shape or datatype, wrong method, bad binary framing, broken HTTP,
clients that hang up mid-request), each with the status it must get.

Asserts: no valid request failed (status, answer, or connection), every invalid one got its
status, and the server's RSS at the end is within RSS_GROWTH_LIMIT of its level right after the
warm-up (the first WARMUP_SHARE of the run); then SIGTERM must give exit code 0. Writes
bench/RESULTS-soak.md with the figures and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import process_cpu  # noqa: E402
from tests.modelzoo import add_model, dynamic_model, heavy_model, save  # noqa: E402
from tests.rawhttp import Conn  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

OUT = ROOT / "bench" / "RESULTS-soak.md"
WARMUP_SHARE = 0.2  # allocator pools and OpenVINO's per-shape caches fill during the first 20 %
RSS_GROWTH_LIMIT = 0.05
SAMPLE_EVERY = 5.0  # seconds between RSS samples
WINDOW = 30.0  # seconds averaged for the "after warm-up" and "end" RSS levels
TIMEOUT = 30.0  # a reply slower than this counts as a failure
RNG = np.random.default_rng(0)


@dataclass
class Kind:
    name: str
    weight: int
    status: int  # what the server must answer; 0: the client hangs up, nothing is expected
    build: Any  # (rng) -> (request bytes, checker or None)
    valid: bool = True


def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def add_json(rng: random.Random) -> tuple[bytes, Any]:
    a = [rng.uniform(-5, 5) for _ in range(10)]
    b = [rng.uniform(-5, 5) for _ in range(10)]
    doc = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": a},
                      {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": b}]}
    want = (np.float32(a) + np.float32(b)).tolist()

    def check(body: bytes) -> None:
        outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
        assert np.allclose(outputs["sum"], want, atol=1e-5), (outputs["sum"], want)

    return http("POST", "/v2/models/add/infer", json.dumps(doc).encode()), check


def dynamic_binary(rng: random.Random) -> tuple[bytes, Any]:
    rows, cols = rng.randint(1, 64), rng.randint(1, 64)
    x = RNG.standard_normal((rows, cols), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "x", "shape": [rows, cols], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    want = x * 2

    def check(body: bytes, head_length: int = 0) -> None:
        # Compared as numbers: OpenVINO's CPU plugin gives +0.0 for -0.0 * 2 (numpy's float32 normal
        # draws hold an exact -0.0 about once in 10^7 values), so the bytes may differ in a zero's sign.
        got = np.frombuffer(body, np.float32, offset=head_length)
        assert got.size == want.size and np.array_equal(got, want.reshape(-1)), "binary output differs"

    request = http("POST", "/v2/models/dynamic/infer", header + x.tobytes(),
                   {"Inference-Header-Content-Length": str(len(header))})
    return request, check


def heavy_binary(rng: random.Random) -> tuple[bytes, Any]:
    x = HEAVY_INPUT
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 3, 64, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()

    def check(body: bytes) -> None:
        (out,) = json.loads(body)["outputs"]
        assert out["shape"] == [1, 16] and np.allclose(out["data"], HEAVY_WANT, rtol=0.02, atol=0.02), out

    return http("POST", "/v2/models/heavy/infer", header + x.tobytes(),
                {"Inference-Header-Content-Length": str(len(header))}), check


def fixed(request: bytes, check: Any = None) -> Any:
    return lambda rng: (request, check)


def has(*keys: str) -> Any:
    def check(body: bytes) -> None:
        doc = json.loads(body)
        assert all(k in doc for k in keys), doc
    return check


def metrics_check(body: bytes) -> None:
    assert b"ovms_requests_success" in body, body[:200]


HEAVY_INPUT = RNG.standard_normal((1, 3, 64, 64), dtype=np.float32)
HEAVY_WANT: list[float] = []  # filled from the first answer (the server is the reference for itself)
BAD_SHAPE = {"inputs": [{"name": "a", "shape": [1, 11], "datatype": "FP32", "data": [0.0] * 11},
                        {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
BAD_TYPE = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "INT32", "data": [0] * 10},
                       {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
MIX = [
    Kind("add JSON", 30, 200, add_json),
    Kind("dynamic binary", 15, 200, dynamic_binary),
    Kind("heavy binary", 6, 200, heavy_binary),
    Kind("model metadata", 5, 200, fixed(http("GET", "/v2/models/add"), has("name", "inputs", "outputs"))),
    Kind("ready", 5, 200, fixed(http("GET", "/v2/health/ready"))),
    Kind("metrics", 1, 200, fixed(http("GET", "/metrics"), metrics_check)),
    Kind("config status", 1, 200, fixed(http("GET", "/v1/config"), has("add", "dynamic", "heavy"))),
    Kind("config reload", 1, 200, fixed(http("POST", "/v1/config/reload"), has("add", "dynamic", "heavy"))),
    Kind("bad JSON", 5, 400, fixed(http("POST", "/v2/models/add/infer", b'{"inputs": [')), valid=False),
    Kind("unknown model", 4, 404, fixed(http("POST", "/v2/models/nope/infer", b"{}")), valid=False),
    Kind("unknown version", 3, 404, fixed(http("GET", "/v2/models/add/versions/7")), valid=False),
    Kind("wrong shape", 4, 400, fixed(http("POST", "/v2/models/add/infer", json.dumps(BAD_SHAPE).encode())),
         valid=False),
    Kind("wrong datatype", 3, 400, fixed(http("POST", "/v2/models/add/infer", json.dumps(BAD_TYPE).encode())),
         valid=False),
    Kind("wrong method", 3, 405, fixed(http("GET", "/v2/models/add/infer")), valid=False),
    Kind("bad binary framing", 3, 400, fixed(http("POST", "/v2/models/add/infer", b'{"inputs": []}xx',
                                                  {"Inference-Header-Content-Length": "999"})), valid=False),
    Kind("broken HTTP", 2, 400, fixed(b"GET /v2 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), valid=False),
    Kind("hang up mid-request", 2, 0, fixed(http("POST", "/v2/models/add/infer", b"{" * 64)[:-30]),
         valid=False),
]


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # valid requests, seconds
    reconnects: int = 0

    def fail(self, kind: Kind, why: str) -> None:
        self.failed[kind.name] += 1
        if len(self.failures) < 20:
            self.failures.append(f"{kind.name}: {why}")


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def connection(port: int, seed: int, deadline: float, stats: Stats) -> None:
    rng = random.Random(seed)
    kinds, weights = MIX, [k.weight for k in MIX]
    reader = writer = None
    while time.monotonic() < deadline:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        kind = rng.choices(kinds, weights)[0]
        request, check = kind.build(rng)
        stats.counts[kind.name] += 1
        started = time.perf_counter()
        writer.write(request)
        if kind.status == 0:  # hang up halfway: the server must just drop it
            writer.close()
            reader = writer = None
            stats.reconnects += 1
            continue
        try:
            assert reader is not None
            status, headers, body = await asyncio.wait_for(read_reply(reader), TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            stats.fail(kind, f"no reply: {type(exc).__name__} {exc}")
            writer.close()
            reader = writer = None
            continue
        if kind.valid:
            stats.latencies.append(time.perf_counter() - started)
        try:
            assert status == kind.status, f"status {status}, wanted {kind.status}: {body[:200]!r}"
            if status >= 400:
                assert "error" in json.loads(body), body[:200]
            if check is not None:
                if "inference-header-content-length" in headers:
                    check(body, int(headers["inference-header-content-length"]))
                else:
                    check(body)
        except AssertionError as exc:
            stats.fail(kind, str(exc)[:300])
        if headers.get("connection") == "close":
            writer.close()
            reader = writer = None
            stats.reconnects += 1
    if writer is not None:
        writer.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def sample_rss(pid: int, deadline: float, samples: list[tuple[float, int]], started: float) -> None:
    every = min(SAMPLE_EVERY, (deadline - started) / 60)  # at least 60 samples in a short run
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - started, rss_kib(pid)))
        await asyncio.sleep(every)
    samples.append((time.monotonic() - started, rss_kib(pid)))


async def soak(port: int, pid: int, seconds: float, connections: int) -> tuple[Stats, list[tuple[float, int]], float]:
    stats = Stats()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(sample_rss(pid, deadline, samples, started),
                         *(connection(port, i, deadline, stats) for i in range(connections)))
    return stats, samples, time.monotonic() - started


def level(samples: list[tuple[float, int]], start: float, end: float) -> float:
    window = [kib for t, kib in samples if start <= t <= end]
    return sum(window) / len(window)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=24)
    args = parser.parse_args()
    seconds = args.minutes * 60
    when = time.time()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    for name, build in (("add", add_model), ("dynamic", dynamic_model), ("heavy", heavy_model)):
        save(build(), work / name, 1)
    (work / "config.json").write_text(json.dumps({"model_config_list": [
        {"config": {"name": n, "base_path": n}} for n in ("add", "dynamic", "heavy")]}))
    command = ["--config_path", str(work / "config.json"), "--metrics_enable", "--file_system_poll_wait_seconds", "1"]
    server = ServerProcess(*command)
    try:
        request, _ = heavy_binary(random.Random(0))  # the reference answer of heavy for our fixed image
        with Conn(server.port) as conn:
            conn.send(request)
            HEAVY_WANT.extend(conn.read().json()["outputs"][0]["data"])
        cpu_before = process_cpu(server.proc.pid)
        stats, samples, elapsed = uvloop.run(soak(server.port, server.proc.pid, seconds, args.connections))
        cpu = process_cpu(server.proc.pid) - cpu_before
        alive = server.proc.poll() is None
        code = server.stop()
        log = server.log()
    finally:
        server.stop()
    warm = seconds * WARMUP_SHARE
    window = min(WINDOW, seconds * 0.1)
    after_warmup = level(samples, warm, warm + window)
    end = level(samples, elapsed - window, elapsed)
    growth = (end - after_warmup) / after_warmup
    ok = (not stats.failed and alive and code == 0 and growth < RSS_GROWTH_LIMIT
          and "Traceback" not in log)
    report = write(args, when, load_before, stats, samples, elapsed, cpu, after_warmup, end, growth, code, ok)
    print(report)
    return 0 if ok else 1


def write(args: argparse.Namespace, when: float, load_before: tuple[float, float, float], stats: Stats,
          samples: list[tuple[float, int]], elapsed: float, cpu: float, after_warmup: float, end: float,
          growth: float, code: int | None, ok: bool) -> str:
    total = sum(stats.counts.values())
    valid = sum(n for name, n in stats.counts.items() if next(k for k in MIX if k.name == name).valid)
    lat = sorted(stats.latencies) or [0.0]
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    lines = [
        "## Soak",
        "",
        f"Written by `python bench/soak.py --minutes {args.minutes:g} --connections {args.connections}` on "
        f"{datetime.datetime.fromtimestamp(when).strftime('%Y-%m-%d %H:%M')}: {elapsed / 60:.1f} minutes of "
        f"closed-loop load from {args.connections} keep-alive connections (one uvloop client) on 127.0.0.1, "
        "one fastserve process (--metrics_enable, --file_system_poll_wait_seconds 1). "
        f"Machine: {os.cpu_count()} cores ({cpu_model}), Python {platform.python_version()}; the machine is "
        f"shared with other work (load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}), "
        "so the rates are what this box gave at the time, not a benchmark.",
        "",
        f"**Result: {'PASS' if ok else 'FAIL'}** - {total} requests ({total / elapsed:.0f}/s), {valid} valid with "
        f"{sum(stats.failed.values())} failed; valid latency p50 {lat[len(lat) // 2] * 1000:.2f} ms, "
        f"p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms; server CPU {cpu:.0f} s "
        f"({cpu / elapsed:.2f} cores); exit code after SIGTERM {code}.",
        "",
        f"RSS: {after_warmup / 1024:.1f} MiB right after the warm-up (first {WARMUP_SHARE:.0%}), "
        f"{end / 1024:.1f} MiB at the end: growth {growth:+.2%} (limit {RSS_GROWTH_LIMIT:.0%}); "
        f"first sample {samples[0][1] / 1024:.1f} MiB, peak {max(k for _, k in samples) / 1024:.1f} MiB.",
        "",
        "| request | must get | sent | failed |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind in MIX:
        must = "hang-up" if kind.status == 0 else str(kind.status)
        lines.append(f"| {kind.name} | {must} | {stats.counts[kind.name]} | {stats.failed[kind.name]} |")
    step = max(1, len(samples) // 12)
    lines += ["", "RSS over time (MiB): " + ", ".join(f"{t / 60:.1f} min {k / 1024:.1f}"
                                                    for t, k in samples[::step] + samples[-1:])]
    if stats.failures:
        lines += ["", "First failures:", ""] + [f"- {f}" for f in stats.failures]
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
