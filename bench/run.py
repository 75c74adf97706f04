"""fastserve's benchmark in one command: every server side by side in one run, written to bench/RESULTS.md.

Rules: builds its models in code (bench/models.py), starts a bare uvloop+httptools server,
fastserve and KServe's Python server (in bench/.venv-kserve, created on first use), measures
each scenario in turn with a closed-loop load generator (bench/loadgen.py), and measures the
in-process limit of the same models (bench/inprocess.py). Repetitions interleave all scenarios,
so every ratio compares figures taken minutes apart, never runs from different days. Traffic
goes to 127.0.0.1 only; every process started is stopped by its PID.
Usage: python bench/run.py            full run (~15-18 min: 3 repetitions of 7 s)
       python bench/run.py --quick    smoke check (~2 min: 1 repetition of 3 s, fewer scenarios)
       python bench/run.py --replot bench/out/results.json --out bench/RESULTS.md   pictures and report again
The report gets PNG pictures beside it (bench/plots.py); perf_analyzer scenarios run when
bench/perf_analyzer.py can make it run (--no-perf-analyzer skips them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench import models, perf_analyzer  # noqa: E402
from bench.harness import PROTO_ENV, Server, free_port  # noqa: E402
from bench.loadgen import LoadResult, Target, run_load  # noqa: E402
from bench.plots import write_plots  # noqa: E402
from bench.report import write_report  # noqa: E402

KSERVE_VENV = BENCH / ".venv-kserve"
PEERS = BENCH.parent.parent / "shared" / "peers"  # the measuring sticks, never copied here
# Batching settings (config.json keys) for the two batched models; batching_probe may give its own.
# The plain variants say max_batch_size 0: they are the unbatched figures (compared with the in-process
# limit), and a model with a dynamic batch is batched by default where the load probe shows it pays.
UNBATCHED = {"max_batch_size": 0}
RESNET_BATCHING = {"max_batch_size": 8, "max_queue_delay_microseconds": 2000}
FRIENDLY_BATCHING = {"max_batch_size": 32, "max_queue_delay_microseconds": 1000}


@dataclass
class Scenario:
    key: str  # e.g. "add_json_c32"
    server: str  # "fastserve" | "kserve" | "bare" | "inprocess"
    path: str = ""
    body: str | None = None  # file name under <work>/bodies
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 1
    quick: bool = False  # part of --quick
    min_seconds: float = 0.0  # slow models: a run shorter than this sees too few requests
    model: str = ""  # inprocess: the model folder; perf_analyzer: the model name
    tool: str = "wrk"  # or "http" / "grpc": perf_analyzer over that protocol (bench/perf_analyzer.py)

    def seconds(self, duration: float) -> float:
        return max(duration, self.min_seconds)


JSON_HEADERS = {"Content-Type": "application/json"}


# ResNet-50 does ~15 inferences/s here: an 8-connection queue takes ~0.5 s to go round and a
# 32-connection one ~2-3 s. Windows of 6 s held ~2 rounds, so requests cut at the window's edges
# moved the ratios by +-25% (the same unbatched config measured 0.68-1.16x of itself); full runs
# take >= ~15 rounds per window. Quick runs keep QUICK_SLOW_SECONDS (smoke only).
SLOW_SECONDS = 20.0
SLOWEST_SECONDS = 30.0
QUICK_SLOW_SECONDS = 6.0


def scenarios(binary_length: dict[str, int], friendly: bool) -> list[Scenario]:
    def binary(name: str) -> dict[str, str]:
        return {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(binary_length[name])}

    out = [
        # Each limit is measured before and after the windows compared with it (bracketed): on a
        # shared machine the speed drifts by tens of per cent within minutes.
        Scenario("health_c32", "bare", "/v2/health/live", connections=32, quick=True),
        Scenario("health_c32", "fastserve", "/v2/health/live", connections=32, quick=True),
        Scenario("health_c32_after", "bare", "/v2/health/live", connections=32, quick=True),
        Scenario("health_c32", "proto", "/v2/health/live", connections=32, quick=True),
        Scenario("health_c32", "kserve", "/v2/health/live", connections=32),
    ]
    for conns in (1, 8, 32, 64, 256):
        for server in ("fastserve", "proto", "kserve"):
            out.append(Scenario(f"add_json_c{conns}", server, "/v2/models/add/infer", "add.json", JSON_HEADERS,
                                conns, quick=conns == 32 and server != "kserve"))
    # Triton's perf_analyzer (binary tensors over HTTP, or gRPC) on the same model: fastserve only, as
    # the other servers here have no model configuration extension, which perf_analyzer asks for first.
    for protocol in ("http", "grpc"):
        for conns in (1, 8, 32):
            out.append(Scenario(f"add_pa_{protocol}_c{conns}", "fastserve", connections=conns, quick=conns == 32,
                                model="add", tool=protocol))
    resnet, slow = "/v2/models/resnet50/infer", SLOW_SECONDS
    out += [
        Scenario("resnet_inprocess", "inprocess", model="resnet50", quick=True, min_seconds=slow),
        Scenario("resnet_bin_c8", "fastserve", resnet, "resnet.bin", binary("resnet"), 8, True, slow),
        Scenario("resnet_json_c8", "fastserve", resnet, "resnet.json", JSON_HEADERS, 8, True, slow),
        Scenario("resnet_bin_c8", "proto", resnet, "resnet.bin", binary("resnet"), 8, False, slow),
        Scenario("resnet_json_c8", "proto", resnet, "resnet.json", JSON_HEADERS, 8, False, slow),
        Scenario("resnet_inprocess_after", "inprocess", model="resnet50", quick=True, min_seconds=slow),
        Scenario("resnet_bin_c8", "kserve", resnet, "resnet.bin", binary("resnet"), 8, False, slow),
        Scenario("resnet_json_c8", "kserve", resnet, "resnet.json", JSON_HEADERS, 8, False, slow),
        Scenario("resnet_unbatched_c32", "fastserve", resnet, "resnet.bin", binary("resnet"), 32, True,
                 SLOWEST_SECONDS),
        Scenario("resnet_batched_c32", "fastserve", "/v2/models/resnet50_batched/infer", "resnet.bin",
                 binary("resnet"), 32, True, SLOWEST_SECONDS),
    ]
    if friendly:
        out += [
            Scenario("friendly_inprocess", "inprocess", model="friendly"),
            Scenario("friendly_unbatched_c32", "fastserve", "/v2/models/friendly/infer", "friendly.bin",
                     binary("friendly"), 32, quick=True),
            Scenario("friendly_batched_c32", "fastserve", "/v2/models/friendly_batched/infer", "friendly.bin",
                     binary("friendly"), 32, quick=True),
        ]
    return out


# Preparation


def prepare(work: Path) -> tuple[Path, dict[str, int], bool]:
    """Models, config.json and request bodies under `work`; (config, binary header lengths, friendly?)."""
    repo, bodies = work / "models", work / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    # Rebuilt every run (a few seconds), so a changed definition never meets a stale file.
    models.save(models.build_add_model(), repo, "add")
    models.save(models.build_resnet50(), repo, "resnet50")
    served = [
        models.ServedModel("add", "add"),
        models.ServedModel("resnet50", "resnet50", UNBATCHED),
        models.ServedModel("resnet50_batched", "resnet50", RESNET_BATCHING),
    ]
    (bodies / "add.json").write_bytes(models.json_body(models.add_inputs()))
    image = models.image_inputs()
    (bodies / "resnet.json").write_bytes(models.json_body(image))
    body, header_length = models.binary_body(image)
    (bodies / "resnet.bin").write_bytes(body)
    lengths = {"resnet": header_length}
    builder = models.batch_friendly_builder()
    if builder is not None:
        friendly = builder()
        models.save(friendly, repo, "friendly")
        served += [models.ServedModel("friendly", "friendly", UNBATCHED),
                   models.ServedModel("friendly_batched", "friendly", friendly_batching())]
        body, lengths["friendly"] = models.binary_body(models.random_inputs(friendly))
        (bodies / "friendly.bin").write_bytes(body)
    return models.write_config(repo, served), lengths, builder is not None


def friendly_batching() -> dict[str, Any]:
    try:
        from bench import batching_probe  # type: ignore[attr-defined]
    except ImportError:
        return FRIENDLY_BATCHING
    return dict(getattr(batching_probe, "BATCH_CONFIG", FRIENDLY_BATCHING))


def ensure_kserve_venv() -> Path | None:
    """bench/.venv-kserve with `kserve` and `openvino` (pip, ~2 min the first time); None if that fails."""
    python = KSERVE_VENV / "bin" / "python"
    check = [str(python), "-c", "import kserve, openvino"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print("creating bench/.venv-kserve (pip install kserve openvino) ...", flush=True)
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "kserve", "openvino"], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"KServe's venv could not be made ({exc}): its scenarios are skipped", flush=True)
        return None
    print(f"  installed in {time.monotonic() - started:.0f} s", flush=True)
    return python


def start_servers(work: Path, config: Path, kserve_python: Path | None) -> dict[str, Server]:
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    servers: dict[str, Server] = {}
    try:
        servers["bare"] = Server("bare", [sys.executable, str(BENCH / "bare_server.py")], logs, ready_path="/")
        grpc_port = free_port()  # gRPC for perf_analyzer -i grpc; idle while wrk runs
        servers["fastserve"] = Server("fastserve", [
            sys.executable, "-m", "fastserve", "--config_path", str(config),
            "--rest_bind_address", "127.0.0.1", "--rest_port", "0",
            "--port", str(grpc_port), "--grpc_bind_address", "127.0.0.1",
        ], logs)
        servers["fastserve"].grpc_port = grpc_port
        proto = start_proto(config.parent, logs)
        if proto is not None:
            servers["proto"] = proto
        if kserve_python is not None:
            port = free_port()
            repo = config.parent
            servers["kserve"] = Server("kserve", [
                str(kserve_python), str(BENCH / "kserve_server.py"), "--http_port", str(port),
                "--model", f"add={repo / 'add/1/model.xml'}", "--model", f"resnet50={repo / 'resnet50/1/model.xml'}",
            ], logs, port=port)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def start_proto(repo: Path, logs: Path) -> Server | None:
    """The lean prototype (../shared/peers/proto_ov_server.py), run from its folder, on the same IR files."""
    script = PEERS / "proto_ov_server.py"
    if not script.exists():
        print(f"the lean prototype is not at {script}: its scenarios are skipped", flush=True)
        return None
    port = free_port()
    return Server("proto", [sys.executable, str(script), "--models", str(repo), "--port", str(port)], logs,
                  port=port, cwd=PEERS, env=PROTO_ENV)


# Measuring


def measure(scenario: Scenario, servers: dict[str, Server], work: Path, seconds: float) -> dict[str, Any]:
    if scenario.server == "inprocess":
        done = subprocess.run(
            [sys.executable, str(BENCH / "inprocess.py"), str(work / "models" / scenario.model / "1" / "model.xml"),
             "--seconds", str(seconds)], capture_output=True, text=True, check=True, timeout=seconds + 120,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    server = servers[scenario.server]
    if scenario.tool != "wrk":
        return _measure_pa(scenario, server, seconds)
    target = Target(server.url + scenario.path, "POST" if scenario.body else "GET",
                    work / "bodies" / scenario.body if scenario.body else None, scenario.headers)
    cpu_before = server.cpu_seconds()
    result: LoadResult = run_load(target, scenario.connections, seconds)
    cpu = server.cpu_seconds() - cpu_before
    out = result.to_dict()
    out["server_cpu_ms_per_req"] = cpu * 1000 / max(result.requests, 1)
    out["server_cpu_cores"] = cpu / result.seconds
    return out


def _measure_pa(scenario: Scenario, server: Server, seconds: float) -> dict[str, Any]:
    assert PERF_ANALYZER is not None
    url = server.url.removeprefix("http://") if scenario.tool == "http" else f"127.0.0.1:{server.grpc_port}"
    cpu_before = server.cpu_seconds()
    out = perf_analyzer.measure(PERF_ANALYZER, url, scenario.tool, scenario.model, scenario.connections, seconds)
    cpu = server.cpu_seconds() - cpu_before
    out["server_cpu_ms_per_req"] = cpu * 1000 / max(int(out["requests"]), 1)
    out["server_cpu_cores"] = cpu / float(out["seconds"])
    return out


def find_perf_analyzer() -> perf_analyzer.PerfAnalyzer | None:
    try:
        return perf_analyzer.ensure()
    except perf_analyzer.NotRunnable as exc:
        print(f"perf_analyzer cannot run ({exc}): its scenarios are skipped", flush=True)
        return None


PERF_ANALYZER: perf_analyzer.PerfAnalyzer | None = None


def run(args: argparse.Namespace) -> int:
    global PERF_ANALYZER
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    print("building models and request bodies ...", flush=True)
    config, lengths, friendly = prepare(work)
    kserve_python = None if args.no_kserve else ensure_kserve_venv()
    PERF_ANALYZER = None if args.no_perf_analyzer else find_perf_analyzer()
    plan = [s for s in scenarios(lengths, friendly)
            if (s.quick or not args.quick) and (s.server != "kserve" or kserve_python is not None)
            and (s.server != "proto" or (PEERS / "proto_ov_server.py").exists())
            and (s.tool == "wrk" or PERF_ANALYZER is not None)]
    if args.only:
        plan = [s for s in plan if any(word in f"{s.key}/{s.server}" for word in args.only.split(","))]
    print("starting servers ...", flush=True)
    servers = start_servers(work, config, kserve_python)
    reps: list[dict[str, dict[str, Any]]] = []
    try:
        for rep in range(args.reps):
            figures: dict[str, dict[str, Any]] = {}
            for scenario in plan:
                name = f"{scenario.key}/{scenario.server}"
                if rep == 0 and scenario.server != "inprocess" and args.warmup > 0:
                    measure(scenario, servers, work, args.warmup)
                seconds = scenario.seconds(args.duration)
                if args.quick:
                    seconds = min(seconds, max(args.duration, QUICK_SLOW_SECONDS))
                figures[name] = measure(scenario, servers, work, seconds)
                print(f"rep {rep + 1}/{args.reps} {name:34s} {_line(figures[name])}", flush=True)
            reps.append(figures)
    finally:
        for server in servers.values():
            server.stop()
    notes = server_notes(servers)
    meta = {
        "mode": "quick" if args.quick else "full", "reps": args.reps, "duration_s": args.duration,
        "loadgen": next((f["tool"] for f in reps[0].values() if "tool" in f), "-"),
        "elapsed_s": time.monotonic() - started, "friendly": friendly, "kserve": kserve_python is not None,
        "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before, "load_after": os.getloadavg(),
        "resnet_json_bytes": (work / "bodies" / "resnet.json").stat().st_size, "server_notes": notes,
    }
    (work / "results.json").write_text(json.dumps({"meta": meta, "reps": reps}, indent=1))
    out = Path(args.out) if args.out else (work / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md")
    write_report(out, meta, reps, write_plots(out.parent, reps))
    print(f"wrote {out} (and its pictures) in {meta['elapsed_s']:.0f} s", flush=True)
    return 0


def replot(results: Path, out: Path) -> int:
    """The report and its pictures again from a results.json, without measuring anything."""
    saved = json.loads(results.read_text())
    write_report(out, saved["meta"], saved["reps"], write_plots(out.parent, saved["reps"]))
    print(f"wrote {out} from {results}", flush=True)
    return 0


def server_notes(servers: dict[str, Server]) -> list[str]:
    """fastserve's model lines (inline or async, batching) and anything it warned about during the run."""
    server = servers.get("fastserve")
    if server is None:
        return []
    keep = ("loaded model", "from now on", "[WARNING]", "[ERROR]")
    return [line.split("] ", 3)[-1] for line in server.log().splitlines() if any(k in line for k in keep)]


def _line(figure: dict[str, Any]) -> str:
    if "p50_ms" not in figure:
        return f"{figure['rps']:9.1f} inf/s (in-process, {figure['jobs']} jobs)"
    return (f"{figure['rps']:9.1f} req/s  p50 {figure['p50_ms']:7.2f} ms  p99 {figure['p99_ms']:7.2f} ms  "
            f"cpu {figure['server_cpu_ms_per_req']:.3f} ms/req  err {figure['errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fastserve's benchmark (writes bench/RESULTS.md)")
    parser.add_argument("--quick", action="store_true", help="~2 minutes: 1 repetition of 3 s, fewer scenarios")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 7, quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per scenario in the first repetition")
    parser.add_argument("--no-kserve", action="store_true", help="skip KServe's server (and its venv)")
    parser.add_argument("--no-perf-analyzer", action="store_true", help="skip the perf_analyzer scenarios")
    parser.add_argument("--only", help="comma-separated words: run the scenarios whose key/server contains one")
    parser.add_argument("--work", default=str(BENCH / "out"), help="models, bodies, logs, results.json")
    parser.add_argument("--out", help="the report (default bench/RESULTS.md; quick: <work>/RESULTS-quick.md)")
    parser.add_argument("--replot", metavar="RESULTS_JSON", help="only rewrite the report and pictures from a run")
    args = parser.parse_args(argv)
    if args.replot:
        return replot(Path(args.replot), Path(args.out) if args.out else Path(args.replot).parent / "RESULTS.md")
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 7.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
