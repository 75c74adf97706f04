"""Where should a model stop running inline on the event loop? Measures inline vs async per model cost.

Rules: models of increasing cost (MLPs on [-1,512] FP32, built in code); for each, the two
execution modes side by side in the same run: (1) in process, a uvloop loop with 16
concurrent workers that also decode JSON and encode the answer, as the server's loop does;
(2) through a real fastserve (one process, each model served twice: execution_mode inline
and async) with the closed-loop client of bench/batching_probe.py on 127.0.0.1. Also times the
async completion hand-off (start_async -> callback thread -> call_soon_threadsafe -> loop).

    python bench/execution_probe.py [--seconds 3] [--connections 16]

The numbers behind INLINE_THRESHOLD_US in fastserve/models/servable.py and docs/batching.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batching_probe import binary_request, build_mlp, run_load, save_model, write_config  # noqa: E402
from fastserve.models.servable import InferResult, Servable  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

# Hidden widths of the ladder: from ~20 us to several ms per batch-1 inference here.
LADDER: dict[str, tuple[int, ...]] = {
    "w64": (64, 16),
    "w256": (256, 256, 16),
    "w512": (512, 512, 16),
    "w768": (768, 768, 16),
    "w1024": (1024, 1024, 16),
    "w1536": (1536, 1536, 16),
    "w2048": (2048, 2048, 2048, 16),
}
WORKERS = 16


async def _drive(servable: Servable, seconds: float) -> float:
    """Requests per second of WORKERS coroutines: JSON decode -> infer -> JSON encode, each yielding once."""
    body = orjson.dumps({"data": np.random.default_rng(1).standard_normal(512).astype(np.float32).tolist()})
    count = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await asyncio.sleep(0)  # the socket read that brings the next request
            array = np.asarray(orjson.loads(body)["data"], dtype=np.float32).reshape(1, 512)
            result = servable.infer([array], [0])
            if type(result) is not InferResult:
                result = await result  # type: ignore[misc]
            orjson.dumps({"data": result.arrays[0].reshape(-1)}, option=orjson.OPT_SERIALIZE_NUMPY)
            result.release()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return count / (time.perf_counter() - started)


async def _handoff(servable: Servable, rounds: int) -> tuple[float, float]:
    """Median latency of one request alone: inline call vs start_async + completion on the loop (us)."""
    array = np.zeros((1, 512), np.float32)
    inline, hopped = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        slot = servable.pool.try_acquire()
        assert slot is not None
        servable._run_inline(slot, [array], [0], 0.0).release()
        inline.append(time.perf_counter() - started)
        servable.inline = False
        started = time.perf_counter()
        result = servable.infer([array], [0])
        assert not isinstance(result, InferResult)
        (await result).release()
        hopped.append(time.perf_counter() - started)
        servable.inline = True
    return statistics.median(inline) * 1e6, statistics.median(hopped) * 1e6


def in_process(seconds: float) -> None:
    core = ov.Core()
    print(f"in process: {WORKERS} workers on uvloop, JSON decode + encode per request; req/s")
    print(f"{'model':8} {'probe us':>9} {'inline':>8} {'async':>8} {'async/inline':>13} {'hop us':>7}"
          "   (best req/s; ratio: median of side-by-side pairs)")
    for name, widths in LADDER.items():
        compiled = core.compile_model(build_mlp(widths, name=name), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        servable = Servable(name, 1, compiled, 0, "inline")
        rates: dict[str, list[float]] = {"inline": [], "async": []}
        for turn in range(4):  # side by side, order alternating, against a shared machine's drift
            for mode in ("inline", "async") if turn % 2 == 0 else ("async", "inline"):
                servable.inline = mode == "inline"
                rates[mode].append(uvloop.run(_drive(servable, seconds / 4)))
        servable.inline = True
        inline_us, hop_us = uvloop.run(_handoff(servable, 200))
        ratio = statistics.median(b / a for a, b in zip(rates["inline"], rates["async"], strict=True))
        print(f"{name:8} {servable.probe_us or 0:9.0f} {max(rates['inline']):8.0f} {max(rates['async']):8.0f} "
              f"{ratio:13.2f} {hop_us - inline_us:7.0f}")


def through_server(seconds: float, connections: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fastserve-exec-") as folder:
        root = Path(folder)
        entries: list[dict[str, object]] = []
        for name, widths in LADDER.items():
            save_model(build_mlp(widths, name=name), root, name)
            for mode in ("inline", "async"):
                entries.append({"name": f"{name}_{mode}", "base_path": name, "execution_mode": mode})
        config = write_config(root, entries)
        server = ServerProcess("--config_path", str(config), "--log_level", "INFO")
        try:
            print(f"\nthrough the server: {connections} connections, binary [1,512] input, JSON output; req/s")
            print(f"{'model':8} {'inline: best req/s, p99, server cpu/req (all threads/loop thread, median)':>40}"
                  f"   async: same   async/inline req/s (median of pairs)")
            payload = np.random.default_rng(2).standard_normal((1, 512)).astype(np.float32)
            for name in LADDER:
                runs: dict[str, list] = {"inline": [], "async": []}
                for turn in range(rounds):  # side by side, order alternating
                    for mode in ("inline", "async") if turn % 2 == 0 else ("async", "inline"):
                        request = binary_request(f"{name}_{mode}", payload)
                        runs[mode].append(run_load(server.port, [request], connections, seconds, warmup=0.5,
                                                   server_pid=server.proc.pid))
                best = {mode: max(r, key=lambda x: x.rps) for mode, r in runs.items()}
                ratios = [b.rps / max(a.rps, 1) for a, b in zip(runs["inline"], runs["async"], strict=True)]
                cpu = {m: (statistics.median(r.cpu_us for r in rs), statistics.median(r.loop_cpu_us for r in rs))
                       for m, rs in runs.items()}
                print(f"{name:8} {best['inline'].rps:6.0f} p99 {best['inline'].quantile(0.99):6.2f} ms"
                      f" cpu {cpu['inline'][0]:4.0f}/{cpu['inline'][1]:4.0f} us"
                      f"   {best['async'].rps:6.0f} p99 {best['async'].quantile(0.99):6.2f} ms"
                      f" cpu {cpu['async'][0]:4.0f}/{cpu['async'][1]:4.0f} us"
                      f"   {statistics.median(ratios):5.2f} {[round(r, 2) for r in ratios]}")
            warmups = [line.split("loaded model ")[1] for line in server.log().splitlines()
                       if "loaded model" in line and "_inline" in line]
            print("\n" + "\n".join(w.split(" on CPU")[0] + ": " + w.rsplit(";", 1)[-1].strip() for w in warmups))
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measured run (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per mode (best kept)")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    if not args.skip_in_process:
        in_process(args.seconds)
    if not args.skip_server:
        through_server(args.seconds, args.connections, args.rounds)


if __name__ == "__main__":
    main()
