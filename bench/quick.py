"""The one-minute regression check for hot-path changes: fastserve / lean prototype, side by side.

Rules: builds the add model in code, starts fastserve and the lean prototype
(`../shared/peers/proto_ov_server.py`, run from that folder) on the same IR, then measures
add JSON and health at 32 connections with wrk (bench/loadgen.py); health also on the bare
uvloop + httptools server (`../shared/peers/raw_httptools.py`, issue 13's health goal is against it),
interleaving the servers in every repetition so each ratio compares figures taken seconds apart. It prints requests/s,
p99 and server CPU per request (from /proc) for both, and the ratios. Traffic goes to 127.0.0.1
only; both processes are stopped by their PIDs. Run it before committing a hot-path change:
With --resnet it also builds ResNet-50 and measures its JSON body (FP32 1x3x224x224, 2.9 MB) at
8 connections on fastserve and the prototype against the in-process limit (bench/inprocess.py,
measured before and after the servers' windows, their mean): issue 13's ResNet JSON goal.
With --workers N fastserve runs N REST worker processes (--rest_workers; the prototype has one).
Usage: python bench/quick.py [--reps 3] [--dur 3] [--conns 32] [--resnet] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench import models  # noqa: E402
from bench.harness import PROTO_ENV, Server, free_port  # noqa: E402
from bench.loadgen import Target, run_load  # noqa: E402

PEERS = BENCH.parent.parent / "shared" / "peers"


def start_proto(repo: Path, logs: Path) -> Server:
    """The prototype serves every `<name>/1/model.xml` under repo; started from ../shared/peers."""
    port = free_port()
    script = PEERS / "proto_ov_server.py"
    if not script.exists():
        raise SystemExit(f"the lean prototype is not at {script}: run from a checkout with ../shared beside it")
    command = [sys.executable, str(script), "--models", str(repo), "--port", str(port)]
    return Server("proto", command, logs, port=port, ready_path="/v2/health/ready", cwd=PEERS, env=PROTO_ENV)


def start_bare(logs: Path) -> Server:
    """The HTTP ceiling: a fixed 200 for every request, started from ../shared/peers."""
    port = free_port()
    command = [sys.executable, str(PEERS / "raw_httptools.py"), "--port", str(port)]
    return Server("bare", command, logs, port=port, ready_path="/", cwd=PEERS)


def start_fastserve(config: Path, logs: Path, workers: int = 1) -> Server:
    command = [
        sys.executable,
        "-m",
        "fastserve",
        "--config_path",
        str(config),
        "--rest_bind_address",
        "127.0.0.1",
        "--rest_port",
        "0",
        *(["--rest_workers", str(workers)] if workers > 1 else []),
    ]
    return Server("fastserve", command, logs)


def measure(server: Server, target: Target, conns: int, seconds: float) -> dict[str, float]:
    cpu = server.cpu_seconds()
    result = run_load(target, conns, seconds)
    used = server.cpu_seconds() - cpu
    if result.errors:
        raise SystemExit(f"{server.name}: {result.errors} errors on {target.url}")
    return {"rps": result.rps, "p99_ms": result.p99_ms, "cpu_us": used / max(result.requests, 1) * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dur", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--resnet", action="store_true", help="also ResNet-50 JSON c8 / in-process limit")
    parser.add_argument("--workers", type=int, default=1, help="fastserve's --rest_workers (CPU counts them all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastserve-quick-") as tmp:
        work = Path(tmp)
        repo, logs = work / "models", work / "logs"
        logs.mkdir(parents=True)
        models.save(models.build_add_model(), repo, "add")
        served = [models.ServedModel("add", "add")]
        if args.resnet:
            models.save(models.build_resnet50(), repo, "resnet50")
            served.append(models.ServedModel("resnet50", "resnet50"))
            (work / "resnet.json").write_bytes(models.json_body(models.image_inputs()))
        config = models.write_config(repo, served)
        body = work / "add.json"
        body.write_bytes(models.json_body(models.add_inputs()))
        servers = [start_fastserve(config, logs, args.workers), start_proto(repo, logs), start_bare(logs)]
        try:
            figures = run(servers, body, args)
            limits = resnet(servers[:2], repo, work / "resnet.json", args) if args.resnet else None
        finally:
            for server in servers:
                server.stop()
    report(figures)
    if limits is not None:
        report_resnet(limits)
    return 0


def inprocess_limit(model: Path, seconds: float) -> tuple[float, float]:
    """(inferences/s, CPU ms per inference) of the model run straight on OpenVINO."""
    done = subprocess.run([sys.executable, str(BENCH / "inprocess.py"), str(model), "--seconds", str(seconds)],
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["rps"]), float(figures["cpu_ms_per_item"])


def resnet(servers: list[Server], repo: Path, body: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per repetition: the limit before, each server's req/s and CPU ms per request, the limit after."""
    model = repo / "resnet50" / "1" / "model.xml"
    seconds = max(args.dur, 6.0)  # ~15 inferences/s: a window needs a few rounds of the 8 connections
    out: dict[str, list[float]] = {}
    for rep in range(args.reps):
        order = servers if rep % 2 == 0 else servers[::-1]
        limit = inprocess_limit(model, seconds)
        for server in order:
            url = server.url + "/v2/models/resnet50/infer"
            target = Target(url, "POST", body, {"Content-Type": "application/json"})
            figures = measure(server, target, 8, seconds)
            out.setdefault(server.name, []).append(figures["rps"])
            out.setdefault(server.name + "_cpu_ms", []).append(figures["cpu_us"] / 1000)
        after = inprocess_limit(model, seconds)
        out.setdefault("limit", []).append((limit[0] + after[0]) / 2)
        out.setdefault("limit_cpu_ms", []).append((limit[1] + after[1]) / 2)
    return out


def report_resnet(out: dict[str, list[float]]) -> None:
    for name in ("fastserve", "proto"):
        ratios = [rps / limit for rps, limit in zip(out[name], out["limit"], strict=True)]
        print(
            f"resnet_json_c8: {name} / in-process limit = {statistics.median(ratios):.2f}x "
            f"(per repetition: {', '.join(f'{r:.2f}' for r in ratios)}; {statistics.median(out[name]):.1f} req/s, "
            f"limit {statistics.median(out['limit']):.1f}/s, server CPU {statistics.median(out[name + '_cpu_ms']):.1f} "
            f"ms per request, in process {statistics.median(out['limit_cpu_ms']):.1f})"
        )


def run(servers: list[Server], body: Path, args: argparse.Namespace) -> dict[tuple[str, str], list[dict[str, float]]]:
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rep in range(args.reps):
        # Rotate who goes first, so a drift in the machine's load does not always favour one.
        order = servers if rep % 2 == 0 else servers[::-1]
        for scenario in ("add_json", "health"):
            for server in order:
                if server.name == "bare" and scenario != "health":
                    continue
                if scenario == "add_json":
                    target = Target(
                        server.url + "/v2/models/add/infer", "POST", body, {"Content-Type": "application/json"}
                    )
                else:
                    target = Target(server.url + "/v2/health/live", "GET")
                figures.setdefault((scenario, server.name), []).append(measure(server, target, args.conns, args.dur))
    return figures


def report(figures: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    def median(scenario: str, server: str, key: str) -> float:
        return statistics.median(f[key] for f in figures[(scenario, server)])

    print(f"{'scenario':10} {'server':10} {'req/s':>9} {'p99 ms':>7} {'CPU us/req':>10}")
    for scenario in ("add_json", "health"):
        for server in ("fastserve", "proto", "bare"):
            if (scenario, server) not in figures:
                continue
            print(
                f"{scenario:10} {server:10} {median(scenario, server, 'rps'):9.0f} "
                f"{median(scenario, server, 'p99_ms'):7.2f} {median(scenario, server, 'cpu_us'):10.1f}"
            )
    for scenario, peer in (("add_json", "proto"), ("health", "proto"), ("health", "bare")):
        ratios: list[Any] = [
            a["rps"] / b["rps"]
            for a, b in zip(figures[(scenario, "fastserve")], figures[(scenario, peer)], strict=True)
        ]
        print(
            f"{scenario}: fastserve / {peer} = {statistics.median(ratios):.2f}x req/s "
            f"(per repetition: {', '.join(f'{r:.2f}' for r in ratios)}); CPU per request "
            f"{median(scenario, 'fastserve', 'cpu_us') / median(scenario, peer, 'cpu_us'):.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
