"""gRPC against the field in one run: fastserve's --port beside KServe's Python server's gRPC port
(bench/kserve_server.py --with-grpc, the same OpenVINO runs) and, for ResNet-50, the in-process limit
(bench/inprocess.py: OpenVINO alone, no server). Load from ../shared/peers/grpc_load.py over
several client processes; interleaved repetitions, medians; one Markdown table with ratios.

Scenarios: add (a, b FP32 [1,16], typed contents) at c1 and c32, ResNet-50 (FP32 [1,3,224,224],
raw_input_contents) at c8. The client's CPU per call is printed so a saturated load generator
shows (grpc_load.py reports client_cpu_s).

Usage (project root, test venv: it has tritonclient[grpc] and kserve):
  .venv/bin/python bench/grpc_peers.py [--reps 2] [--dur 6] [--procs 2] [--only resnet50] [--fastserve-flag=--x=y ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.grpc_side_by_side import PEERS, ROOT, add16, free_port, wait_port  # noqa: E402
from bench.models import build_resnet50  # noqa: E402

SCENARIOS = [("add", 1, False), ("add", 32, False), ("resnet50", 8, True)]


def models(folder: Path) -> dict[str, Path]:
    add = add16(folder)
    resnet = folder / "resnet50"
    ov.save_model(build_resnet50(), resnet / "1" / "model.xml")
    return {"add": add, "resnet50": resnet}


def start(name: str, paths: dict[str, Path], folder: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if name == "fastserve":
        config = folder / "config.json"
        config.write_text(json.dumps({"model_config_list": [
            {"config": {"name": model, "base_path": str(path)}} for model, path in paths.items()]}))
        command = [sys.executable, "-m", "fastserve", "--config_path", str(config), "--rest_port", "0",
                   "--rest_bind_address", "127.0.0.1", "--port", str(port), "--grpc_bind_address", "127.0.0.1",
                   "--log_level", "WARNING", *extra]
    else:
        command = [sys.executable, str(ROOT / "bench" / "kserve_server.py"), "--with-grpc", "--grpc_port", str(port),
                   "--http_port", str(free_port()),
                   *[f"--model={model}={path / '1' / 'model.xml'}" for model, path in paths.items()]]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, 120)
    wait_ready(port, list(paths), 300)  # fastserve loads (and probes) its models after the port opens
    return proc, port


def wait_ready(port: int, names: list[str], timeout: float) -> None:
    """Until ModelReady is true for every model: a fixed sleep let fastserve's load-time probes of
    ResNet-50 run into the first measured seconds (a first repetition 20% down)."""
    import grpc

    from fastserve.grpc.proto.inference_pb2 import ModelReadyRequest, ModelReadyResponse

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady",
                                    request_serializer=ModelReadyRequest.SerializeToString,
                                    response_deserializer=ModelReadyResponse.FromString)
        for name in names:
            while True:
                try:
                    if ready(ModelReadyRequest(name=name), timeout=5).ready:
                        break
                except grpc.RpcError:
                    pass  # not loaded yet (NOT_FOUND) or not serving yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"model {name} not ready on port {port} in {timeout:.0f} s")
                time.sleep(0.2)


def load(port: int, model: str, concurrency: int, raw: bool, duration: float, procs: int) -> dict:
    command = [sys.executable, "grpc_load.py", f"127.0.0.1:{port}", model, "--c", str(concurrency),
               "--p", str(min(procs, concurrency)), "--dur", str(duration), *(["--raw"] if raw else [])]
    out = subprocess.run(command, cwd=PEERS, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_process(path: Path, duration: float) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "inprocess.py"), str(path / "1" / "model.xml"),
                          "--seconds", str(duration)], capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])["rps"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dur", type=float, default=6.0)
    ap.add_argument("--procs", type=int, default=2, help="grpc_load.py client processes")
    ap.add_argument("--only", choices=["add", "resnet50"], help="one model's scenarios only")
    ap.add_argument("--fastserve-flag", action="append", default=[], help="an extra fastserve flag (repeatable)")
    args = ap.parse_args()
    servers = ["fastserve", "kserve"]
    scenarios = [s for s in SCENARIOS if args.only in (None, s[0])]
    results: dict[tuple[str, str, int], list[dict]] = {}
    limits: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = models(folder)
        for _ in range(args.reps):
            if args.only != "add":
                limits.append(in_process(paths["resnet50"], args.dur))
            for name in servers:  # interleaved: each repetition visits every server
                proc, port = start(name, paths, folder, args.fastserve_flag)
                try:
                    for model, c, raw in scenarios:
                        load(port, model, c, raw, 1.0, args.procs)  # warm-up: first calls allocate
                        results.setdefault((name, model, c), []).append(
                            load(port, model, c, raw, args.dur, args.procs))
                finally:
                    proc.terminate()
                    proc.wait(30)
    print(json.dumps({f"{k[0]} {k[1]} c{k[2]}": v for k, v in results.items()}), file=sys.stderr)
    limit = statistics.median(limits) if limits else 0.0
    print(f"in-process limit (ResNet-50, OpenVINO alone): {limit:.1f} inf/s")
    print("| scenario | fastserve RPC/s | p99 ms | KServe-py RPC/s | p99 ms | fastserve / KServe | fastserve / limit |")
    print("|---|---|---|---|---|---|---|")
    for model, c, raw in scenarios:
        row = {name: results[(name, model, c)] for name in servers}
        rps = {name: statistics.median(r["rps"] for r in runs) for name, runs in row.items()}
        p99 = {name: statistics.median(r["p99_ms"] or 0 for r in runs) for name, runs in row.items()}
        errors = {name: sum(r.get("errors", 0) for r in runs) for name, runs in row.items()}
        note = {name: f" (errors {errors[name]})" if errors[name] else "" for name in servers}
        vs_limit = f"{rps['fastserve'] / limit:.2f}" if model == "resnet50" else "-"
        print(f"| {model} {'raw' if raw else 'typed'} c{c} | {rps['fastserve']:,.0f}{note['fastserve']} | "
              f"{p99['fastserve']:.2f} | {rps['kserve']:,.0f}{note['kserve']} | {p99['kserve']:.2f} | "
              f"{rps['fastserve'] / rps['kserve']:.2f} | {vs_limit} |")


if __name__ == "__main__":
    main()
