"""--rest_workers 1 vs 2 on this machine: requests/s for a tiny model (JSON) and a heavier one (binary).

Run from the repository root: `python bench/workers.py [--seconds 1] [--rounds 20]` (~90 s;
127.0.0.1 only). It builds the zoo's `add` (two FP32 [1,10] inputs, JSON) and `heavy` (five 3x3
convolutions on FP32 [1,3,64,64], one image sent as binary) models, starts one fastserve with 1
worker and one with 2 workers side by side on free ports, checks both answer correctly, then
takes turns: each round runs every scenario on each server for --seconds of closed-loop load
(wrk when installed, see bench/loadgen.py), alternating which server goes first. The table
sums the slices; the servers' CPU time (parent and workers) is per 1000 requests. Writes
bench/RESULTS-workers.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import Server  # noqa: E402
from bench.loadgen import LoadResult, Target, run_load  # noqa: E402
from tests.modelzoo import add_model, heavy_model, save  # noqa: E402
from tests.rawhttp import Conn  # noqa: E402

OUT = ROOT / "bench" / "RESULTS-workers.md"


@dataclass
class Scenario:
    name: str
    path: str
    body: bytes
    headers: dict[str, str]
    connections: int
    what: str


@dataclass
class Tally:
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    cpu: float = 0.0
    client_cpu: float = 0.0
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)  # per round, for paired ratios

    def add(self, result: LoadResult, cpu: float) -> None:
        self.rps.append(result.rps)
        self.requests += result.requests
        self.seconds += result.seconds
        self.errors += result.errors
        self.cpu += cpu
        self.client_cpu += result.loadgen_cpu_s
        self.p50.append(result.p50_ms)
        self.p99.append(result.p99_ms)


def scenarios() -> list[Scenario]:
    add = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": [float(i) for i in range(10)]},
                      {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 3, 64, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": image.nbytes}}]}).encode()
    return [
        Scenario("add", "/v2/models/add/infer", json.dumps(add).encode(), {"Content-Type": "application/json"}, 16,
                 "tiny model, JSON in and out (the HTTP + codec path dominates)"),
        Scenario("heavy", "/v2/models/heavy/infer", header + image.tobytes(),
                 {"Inference-Header-Content-Length": str(len(header))}, 8,
                 "5 convolutions on one 3x64x64 image, binary in, JSON out (OpenVINO dominates)"),
    ]


def check(server: Server, scenario: Scenario) -> None:
    with Conn(server.port) as conn:
        reply = conn.request("POST", scenario.path, scenario.body, scenario.headers)
    assert reply.status == 200, reply.body
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    if scenario.name == "add":
        assert outputs["sum"]["data"] == [i + 1.0 for i in range(10)], outputs
    else:
        assert outputs["y"]["shape"] == [1, 16], outputs


def wait_workers(server: Server, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while f"server ready: {count} workers" not in server.log():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: workers not ready:\n{server.log()[-3000:]}")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per slice (short: better pairs)")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    started = time.time()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    save(add_model(), work / "add", 1)
    save(heavy_model(), work / "heavy", 1)
    (work / "config.json").write_text(json.dumps({"model_config_list": [
        {"config": {"name": "add", "base_path": "add"}}, {"config": {"name": "heavy", "base_path": "heavy"}}]}))
    cases = scenarios()
    bodies = {}
    for case in cases:
        bodies[case.name] = work / f"{case.name}.body"
        bodies[case.name].write_bytes(case.body)
    servers: dict[int, Server] = {}
    try:
        for workers in (1, 2):
            command = [sys.executable, "-m", "fastserve", "--config_path", str(work / "config.json"),
                       "--rest_bind_address", "127.0.0.1", "--rest_port", "0", "--rest_workers", str(workers),
                       "--file_system_poll_wait_seconds", "0"]
            servers[workers] = server = Server(f"workers{workers}", command, work)
            if workers > 1:
                wait_workers(server, workers)
            for case in cases:
                check(server, case)
        tallies = {(c.name, w): Tally() for c in cases for w in servers}
        for round_ in range(args.rounds):
            order = [1, 2] if round_ % 2 == 0 else [2, 1]
            for case in cases:
                for workers in order:
                    server = servers[workers]
                    target = Target(server.url + case.path, "POST", bodies[case.name], case.headers)
                    cpu = server.cpu_seconds()
                    result = run_load(target, case.connections, args.seconds)
                    tallies[(case.name, workers)].add(result, server.cpu_seconds() - cpu)
                    print(f"round {round_ + 1} {case.name} workers={workers}: {result.rps:.0f} req/s, "
                          f"p50 {result.p50_ms:.2f} ms, errors {result.errors}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    write(cases, tallies, args, started, load_before, os.getloadavg()[0])
    return 0


def write(cases: list[Scenario], tallies: dict[tuple[str, int], Tally], args: argparse.Namespace, started: float,
          load_before: float, load_after: float) -> None:
    when = datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M")
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    lines = [
        "## --rest_workers 1 vs 2",
        "",
        f"Written by `python bench/workers.py --seconds {args.seconds:g} --rounds {args.rounds}` on {when}, "
        f"{time.time() - started:.0f} s in all. Both servers run side by side on 127.0.0.1 and take turns: "
        f"{args.rounds} rounds of {args.seconds:g} s per scenario and server, closed-loop keep-alive load from "
        f"wrk (one thread). Machine: {os.cpu_count()} cores ({cpu_model}), Python {platform.python_version()}, "
        f"OpenVINO {ov.get_version()}. Load average before/after: {load_before:.2f} / {load_after:.2f} "
        "(the machine is shared with other work; compare the rows of one run, not across runs).",
        "",
        "| scenario | workers | connections | requests/s | p50 latency | p99 latency | server CPU ms / req "
        "| server cores | wrk cores | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        for workers in (1, 2):
            t = tallies[(case.name, workers)]
            rps = t.requests / t.seconds if t.seconds else 0.0
            lines.append(f"| {case.name} | {workers} | {case.connections} | {rps:.0f} | "
                         f"{sorted(t.p50)[len(t.p50) // 2]:.2f} ms | {sorted(t.p99)[len(t.p99) // 2]:.2f} ms | "
                         f"{1000 * t.cpu / max(t.requests, 1):.3f} | {t.cpu / t.seconds:.2f} | "
                         f"{t.client_cpu / t.seconds:.2f} | {t.errors} |")
    lines += ["", "Gain of 2 workers over 1 (requests/s; all slices, and the median of each round's back-to-back "
              "pair, which drift in the machine's other load affects less):", ""]
    for case in cases:
        one, two = (tallies[(case.name, w)] for w in (1, 2))
        ratio = (two.requests / two.seconds) / (one.requests / one.seconds) if one.requests and two.seconds else 0.0
        paired = sorted(b / a for a, b in zip(one.rps, two.rps, strict=True) if a)
        rounds = ", ".join(f"{r:.2f}" for r in paired)
        lines.append(f"- {case.name} ({case.what}): {ratio:.2f}x overall, median pair {paired[len(paired) // 2]:.2f}x "
                     f"(rounds, sorted: {rounds})")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
