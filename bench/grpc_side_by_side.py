"""gRPC side by side in one run: fastserve's gRPC port on each transport (--grpc_transport h2 and
grpcio) against the bare servers of ../shared/peers (raw_grpc.py with and without --parse,
raw_h2_grpc.py), all driven by
../shared/peers/grpc_load.py (add model: a, b FP32 [1,16] -> sum; typed contents), interleaved
repetitions (each repetition visits every server, in a rotated order), medians. Prints a
Markdown table of RPC/s, p99, the server's CPU per call and fastserve-h2 / it ratios (of RPC/s).

Usage (from the project root, with the test venv, which has tritonclient[grpc]):
  .venv/bin/python bench/grpc_side_by_side.py [--reps 2] [--dur 6] [--c 1,32] [--servers fastserve-grpcio]
      [--before DIR]  (DIR/fastserve: an earlier version, served as "fastserve-h2 (before)")
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov
import openvino.opset15 as ops

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"


def add16(folder: Path) -> Path:
    a = ops.parameter([1, 16], ov.Type.f32, name="a")
    b = ops.parameter([1, 16], ov.Type.f32, name="b")
    a.output(0).get_tensor().set_names({"a"})
    b.output(0).get_tensor().set_names({"b"})
    total = ops.add(a, b)
    total.output(0).get_tensor().set_names({"sum"})
    ov.save_model(ov.Model([total.output(0)], [a, b], "add"), folder / "add" / "1" / "model.xml")
    return folder / "add"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


BEFORE: list[Path] = []  # --before: a tree whose fastserve/ is the version to compare with


def start(name: str, model: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if name.startswith("fastserve"):
        # Pinned inline (the default `auto` may move the model to async on a busy machine, see
        # models/servable.py, and then the figures measure that switch, not the transport).
        config = model.parent / "config.json"
        config.write_text(json.dumps({"model_config_list": [
            {"config": {"name": "add", "base_path": str(model), "execution_mode": "inline"}}]}))
        command = [sys.executable, "-m", "fastserve", "--config_path", str(config), "--rest_port", "0",
                   "--rest_bind_address", "127.0.0.1", "--port", str(port),
                   "--grpc_bind_address", "127.0.0.1", "--log_level", "WARNING",
                   "--grpc_transport", name.split("-", 1)[1].split(" ")[0]]
        cwd = BEFORE[0] if name.endswith("(before)") else ROOT  # python -m imports fastserve from cwd
    else:
        script, *flags = {"grpc.aio --parse": ["raw_grpc.py", "--parse"], "grpc.aio fixed": ["raw_grpc.py"],
                          "h2 on uvloop": ["raw_h2_grpc.py"]}[name]
        command = [sys.executable, script, str(port), *flags]
        cwd = PEERS
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    if name.startswith("fastserve"):
        wait_model(port)  # the model loads after the port opens
    time.sleep(0.3)
    return proc, port


def wait_model(port: int, timeout: float = 60.0) -> None:
    import grpc

    ready = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary("/inference.GRPCInferenceService/ModelReady")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ready(b"\n\x03add", timeout=5)  # ModelReadyRequest(name="add")
            return
        except grpc.RpcError:
            time.sleep(0.1)
    raise RuntimeError("the add model did not load")


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, concurrency: int, duration: float, pid: int) -> dict:
    before = cpu_seconds(pid)
    out = subprocess.run([sys.executable, "grpc_load.py", f"127.0.0.1:{port}", "add", "--c", str(concurrency),
                          "--dur", str(duration)], cwd=PEERS, capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Server CPU per call, the steadier figure on a shared machine (the 1 s warm-up is counted too).
    result["cpu_us"] = (cpu_seconds(pid) - before) * 1e6 / max(result["rps"] * (duration + 1), 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dur", type=float, default=6.0)
    ap.add_argument("--c", default="1,32")
    ap.add_argument("--servers", default="", help="a comma-separated subset (default: all)")
    ap.add_argument("--before", type=Path, help="a tree with an earlier fastserve/ (e.g. `git archive REV fastserve "
                    "| tar -x -C DIR`), served as 'fastserve-h2 (before)' beside this one")
    args = ap.parse_args()
    ours = "fastserve-h2"
    servers = [ours, "fastserve-grpcio", "grpc.aio --parse", "grpc.aio fixed", "h2 on uvloop"]
    if args.before is not None:
        BEFORE.append(args.before.resolve())
        servers.insert(1, "fastserve-h2 (before)")
    if args.servers:
        servers = [ours] + [s for s in args.servers.split(",") if s != ours]
        if args.before is not None and "fastserve-h2 (before)" not in servers:
            servers.insert(1, "fastserve-h2 (before)")
    levels = [int(c) for c in args.c.split(",")]
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = add16(Path(tmp))
        for rep in range(args.reps):
            shift = rep % len(servers)
            for name in servers[shift:] + servers[:shift]:  # interleaved, and no server always first
                proc, port = start(name, model)
                try:
                    for c in levels:
                        results.setdefault((name, c), []).append(load(port, c, args.dur, proc.pid))
                finally:
                    proc.terminate()
                    proc.wait(30)
    print("| server | " + " | ".join(f"c{c} RPC/s | c{c} p99 ms | c{c} server CPU us/call | {ours} / it"
                                     for c in levels) + " |")
    print("|---|" + "---|---|---|---|" * len(levels))
    for name in servers:
        cells = []
        for c in levels:
            rps = statistics.median(r["rps"] for r in results[(name, c)])
            mine = statistics.median(r["rps"] for r in results[(ours, c)])
            p99 = statistics.median(r["p99_ms"] for r in results[(name, c)])
            cpu = statistics.median(r["cpu_us"] for r in results[(name, c)])
            errors = sum(r.get("errors", 0) for r in results[(name, c)])
            failed = f" (errors {errors})" if errors else ""
            cells.append(f"{rps:,.0f}{failed} | {p99:.2f} | {cpu:.0f} | {mine / rps:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
