"""Overload: p99 of the requests served and the share refused with 503, against connections (1 to 1024).

Rules: builds the add model in code (an inline model: the event loop is its queue) and starts, on
the same IR, fastserve with a small bound (`--max_queue_size LIMIT`, core/admission.py), fastserve
with its defaults, and the lean prototype (../shared/peers/proto_ov_server.py, run from that folder
as bench/run.py does). Each connection count is a short closed-loop run of bench/loadgen.py's uvloop
client (it tells successes and 503s apart, which wrk's summary cannot), the servers in turn, the
order rotated per count. A refused connection sends again at once (it does not honour Retry-After),
the harshest case for the server. Prints req/s and p50/p99 of the successes and the 503 share per
count, and writes bench/RESULTS-overload.md with a PNG of the curves. Traffic goes to 127.0.0.1 only;
every process is stopped by its PID.
Usage: python bench/overload.py [--conns 1,4,16,64,256,1024] [--dur 3] [--limit 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench import models  # noqa: E402
from bench.harness import Server  # noqa: E402
from bench.loadgen import TIMEOUT_S  # noqa: E402
from bench.run import start_proto  # noqa: E402

PICTURE = "results-overload.png"
Figures = dict[str, dict[int, dict[str, float]]]  # server -> connections -> figures


def start_fastserve(config: Path, logs: Path, name: str, extra: list[str]) -> Server:
    command = [sys.executable, "-m", "fastserve", "--config_path", str(config), "--rest_bind_address", "127.0.0.1",
               "--rest_port", "0", *extra]  # fmt: skip
    return Server(name, command, logs)


def measure(server: Server, body: Path, conns: int, seconds: float) -> dict[str, float]:
    command = [sys.executable, str(BENCH / "loadgen.py"), server.url + "/v2/models/add/infer", "-c", str(conns),
               "-d", str(seconds), "-X", "POST", "--body", str(body), "-H", "Content-Type: application/json",
               "--statuses"]  # fmt: skip
    cpu = server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + TIMEOUT_S + 60)
    if done.returncode != 0:
        raise RuntimeError(f"load client failed against {server.name} at c{conns}: {done.stderr[-2000:]}")
    used = server.cpu_seconds() - cpu
    out = json.loads(done.stdout.strip().splitlines()[-1])
    answered = max(out["requests"], 1)
    return {
        "ok_rps": out["ok"] / out["seconds"], "ok_p50_ms": out["ok_p50_ms"], "ok_p99_ms": out["ok_p99_ms"],
        "refused_share": out["refused"] / answered, "other_errors": out["errors"] - out["refused"],
        "answered_rps": out["rps"], "all_p99_ms": out["p99_ms"], "cpu_us": used / answered * 1e6,
    }  # fmt: skip


def run(servers: list[Server], body: Path, counts: list[int], seconds: float) -> Figures:
    figures: Figures = {s.name: {} for s in servers}
    for turn, conns in enumerate(counts):
        order = servers[turn % len(servers) :] + servers[: turn % len(servers)]
        for server in order:
            figures[server.name][conns] = got = measure(server, body, conns, seconds)
            print(f"c{conns:<5} {server.name:22} {_line(got)}", flush=True)
    return figures


def _line(f: dict[str, float]) -> str:
    return (f"ok {f['ok_rps']:7.0f}/s  p50 {f['ok_p50_ms']:7.2f} ms  p99 {f['ok_p99_ms']:8.2f} ms  "
            f"503 {f['refused_share'] * 100:5.1f}%  other errors {f['other_errors']:.0f}  "
            f"CPU {f['cpu_us']:5.1f} us/answer")  # fmt: skip


def plot(figures: Figures, out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for name, points in figures.items():
        conns = sorted(points)
        left.plot(conns, [points[c]["ok_p99_ms"] for c in conns], marker="o", label=f"{name} p99 (200s)")
        right.plot(conns, [points[c]["refused_share"] * 100 for c in conns], marker="o", label=f"{name} 503 share")
    for ax, ylabel in ((left, "p99 latency of the 200s, ms (log)"), (right, "answers that were 503, %")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (closed loop, no pipelining)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    left.set_yscale("log")
    right.set_ylim(-2, 100)
    fig.suptitle("add JSON under overload: p99 of the successes and the 503 share against connections", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_report(path: Path, figures: Figures, args: argparse.Namespace, pictured: bool, meta: dict[str, Any]) -> None:
    lines = [
        "## Overload: p99 and 503s against connections (add JSON)", "",
        f"Written by `python bench/overload.py --conns {args.conns} --dur {args.dur:g} --limit {args.limit}` on "
        f"{meta['date']} ({meta['elapsed_s']:.0f} s; load average before {meta['load_before']:.2f}, after "
        f"{meta['load_after']:.2f}; {os.cpu_count()} cores shared with the load client and other work). "
        f"Closed-loop uvloop client (bench/loadgen.py --statuses), one request in flight per connection, a "
        f"refused connection sending again at once (not after Retry-After). `fastserve-limit{args.limit}` runs "
        f"with `--max_queue_size {args.limit}`: at most {args.limit} inline requests are served per turn of the "
        f"event loop, the rest get `503` + `Retry-After: 1` at once (fastserve/core/admission.py); "
        "`fastserve-default` has the default 4096, the prototype no bound.", "",
    ]  # fmt: skip
    if pictured:
        lines += [f"![p99 and 503 share against connections]({PICTURE})", ""]
    lines += ["| connections | server | 200/s | p50 ms (200s) | p99 ms (200s) | 503 share | CPU us/answer |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    counts = sorted({c for points in figures.values() for c in points})
    for conns in counts:
        for name, points in figures.items():
            f = points.get(conns)
            if f is not None:
                lines.append(f"| {conns} | {name} | {f['ok_rps']:.0f} | {f['ok_p50_ms']:.2f} | {f['ok_p99_ms']:.2f} | "
                             f"{f['refused_share'] * 100:.1f}% | {f['cpu_us']:.1f} |")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conns", default="1,4,16,64,256,1024", help="comma-separated connection counts")
    parser.add_argument("--dur", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--limit", type=int, default=16, help="fastserve's --max_queue_size for the bounded run")
    parser.add_argument("--out", default=str(BENCH / "RESULTS-overload.md"))
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.conns.split(",")]
    if not counts or min(counts) < 1 or max(counts) > 4096:
        parser.error("--conns: counts from 1 to 4096")
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fastserve-overload-") as tmp:
        work = Path(tmp)
        repo, logs = work / "models", work / "logs"
        logs.mkdir(parents=True)
        models.save(models.build_add_model(), repo, "add")
        config = models.write_config(repo, [models.ServedModel("add", "add")])
        body = work / "add.json"
        body.write_bytes(models.json_body(models.add_inputs()))
        servers: list[Server] = []
        try:
            servers.append(start_fastserve(config, logs, f"fastserve-limit{args.limit}",
                                           ["--max_queue_size", str(args.limit)]))  # fmt: skip
            servers.append(start_fastserve(config, logs, "fastserve-default", []))
            proto = start_proto(repo, logs)
            if proto is not None:
                servers.append(proto)
            figures = run(servers, body, counts, args.dur)
        finally:
            for server in servers:
                server.stop()
    out = Path(args.out)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "elapsed_s": time.monotonic() - started,
            "load_before": load_before, "load_after": os.getloadavg()[0]}  # fmt: skip
    write_report(out, figures, args, plot(figures, out.parent / PICTURE), meta)
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
