"""Batching on by default: each model served as `default` (no batching keys) and `off`
(max_batch_size 0) by one server, measured side by side in one run.

Rules: builds its models with OpenVINO's opset (no downloads), talks to a real fastserve on
127.0.0.1 only (the closed-loop client of bench/batching_probe.py, binary input, JSON output),
every load run bounded to ~10 s. Variants alternate within each round, so drift on a shared
machine hits both alike; each ratio is the median of ratios of runs made next to each other.

    python bench/batching_default.py               # ~4 min: 3 rounds of 3 s runs
    python bench/batching_default.py --rounds 1 --seconds 2

Models: `friendly` (build_batch_friendly_model(): weights-bound MLP, the load probe turns
batching on), `heavy` (the test zoo's 64x64 convolution net: the probe says no, so `default`
is unbatched too), `add` (static [1,4]: nothing to batch) and `add_auto` (the same add served
with OVMS's batch_size "auto": a dynamic dim 0 on a ~15 us model, batched by default).
Goals (issue 13 item 6): default / off >= 1.3x req/s at 32 connections on `friendly`, and
p50 at 1 connection no more than 5% worse on every model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.batching_probe import (  # noqa: E402
    FEATURES,
    LoadResult,
    build_batch_friendly_model,
    run_load,
    save_model,
    write_config,
)
from bench.models import build_add_model  # noqa: E402

VARIANTS = {"default": {}, "off": {"max_batch_size": 0}}


def binary_request(model: str, inputs: dict[str, np.ndarray]) -> bytes:
    """One keep-alive HTTP request with every input as a binary section (JSON outputs)."""
    header = json.dumps({"inputs": [{
        "name": name, "shape": list(array.shape), "datatype": "FP32", "parameters": {"binary_data_size": array.nbytes},
    } for name, array in inputs.items()]}).encode()
    body = header + b"".join(np.ascontiguousarray(a, dtype=np.float32).tobytes() for a in inputs.values())
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def models() -> dict[str, tuple[object, dict[str, object], list[dict[str, np.ndarray]]]]:
    """name -> (model, extra config keys, request inputs)."""
    from tests.modelzoo import heavy_model

    rng = np.random.default_rng(3)

    def rows(shape: tuple[int, ...], *names: str) -> list[dict[str, np.ndarray]]:
        return [{n: rng.standard_normal(shape).astype(np.float32) for n in names} for _ in range(8)]

    return {
        "friendly": (build_batch_friendly_model(), {}, rows((1, FEATURES), "x")),
        "heavy": (heavy_model(), {}, rows((1, 3, 64, 64), "x")),
        "add": (build_add_model(), {}, rows((1, 4), "a", "b")),
        "add_auto": (build_add_model(), {"batch_size": "auto"}, rows((1, 4), "a", "b")),
    }


def measure(seconds: float, rounds: int, connections: tuple[int, ...]) -> list[str]:
    from tests.serverproc import ServerProcess

    served = models()
    lines = []
    with tempfile.TemporaryDirectory(prefix="fastserve-batching-default-") as folder:
        root = Path(folder)
        entries: list[dict[str, object]] = []
        for name, (model, extra, _) in served.items():
            save_model(model, root / "models", name)  # type: ignore[arg-type]
            entries += [{"name": f"{name}_{v}", "base_path": f"models/{name}", **extra, **keys}
                        for v, keys in VARIANTS.items()]
        server = ServerProcess("--config_path", str(write_config(root, entries)))
        try:
            print("load log (what each variant chose):")
            for line in server.log().splitlines():
                if "loaded model" in line:
                    model, _, rest = line.split("loaded model ")[1].partition(" on CPU")
                    print(f"  {model}: {rest.split('; outputs ')[-1]}")
            lines += ["| model | batching by default | c1 p50 off | c1 p50 default | default / off (p50, paired "
                      "median) | c32 req/s off | c32 req/s default | default / off (req/s, paired median) |",
                      "|---|---|---|---|---|---|---|---|"]
            for name, (_, _, inputs) in served.items():
                cells: dict[int, tuple[float, float, float]] = {}
                for count in connections:
                    runs: dict[str, list[LoadResult]] = {v: [] for v in VARIANTS}
                    for turn in range(rounds):
                        for variant in list(VARIANTS) if turn % 2 == 0 else list(VARIANTS)[::-1]:
                            payloads = [binary_request(f"{name}_{variant}", x) for x in inputs]
                            runs[variant].append(run_load(server.port, payloads, count, seconds,
                                                          server_pid=server.proc.pid))
                    for variant, results in runs.items():
                        print(f"{name:9} c{count:<3d} {variant:8} " + " | ".join(r.describe() for r in results),
                              flush=True)
                    if count == 1:  # latency: p50 ratio, lower is better
                        pairs = [d.quantile(0.5) / o.quantile(0.5) for o, d in zip(runs["off"], runs["default"],
                                                                                 strict=True)]
                        key = [statistics.median(r.quantile(0.5) for r in runs[v]) for v in ("off", "default")]
                    else:
                        pairs = [d.rps / max(o.rps, 1.0) for o, d in zip(runs["off"], runs["default"], strict=True)]
                        key = [statistics.median(r.rps for r in runs[v]) for v in ("off", "default")]
                    cells[count] = (key[0], key[1], statistics.median(pairs))
                chosen = "on" if ", batching up to" in _choice(server.log(), f"{name}_default") else "off"
                c1, c32 = cells.get(1), cells.get(max(connections)) if max(connections) > 1 else None
                lines.append(f"| {name} | {chosen} | "
                             + (f"{c1[0]:.3f} ms | {c1[1]:.3f} ms | {c1[2]:.3f} | " if c1 else "- | - | - | ")
                             + (f"{c32[0]:.0f} | {c32[1]:.0f} | {c32[2]:.2f} |" if c32 else "- | - | - |"))
        finally:
            server.stop()
    return lines


def _choice(log: str, model: str) -> str:
    for line in log.splitlines():
        if f"loaded model {model} " in line:
            return line
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per load run (default 3, at most 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant (default 3)")
    parser.add_argument("--connections", default="1,32", help="comma-separated (default 1,32)")
    args = parser.parse_args()
    connections = tuple(int(c) for c in args.connections.split(","))
    lines = measure(min(args.seconds, 10.0), args.rounds, connections)
    print(f"\n{args.rounds} rounds of {min(args.seconds, 10.0):g} s closed-loop runs, binary input, JSON output\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
