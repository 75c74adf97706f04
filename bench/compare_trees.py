"""Before/after for a refactor: two fastserve checkouts served side by side, interleaved.

Rules: each checkout's server runs from its own tree (`python -m fastserve` with that tree as
the working directory), on the same IR files, one at a time, alternating per repetition, so a
slow stretch of a shared machine hits both. Load from bench/loadgen.py (wrk when installed), to
127.0.0.1 only; servers are stopped by PID. Prints req/s, p99 and server CPU per request, and
the after/before ratio of the medians.
Usage: python bench/compare_trees.py BEFORE_DIR AFTER_DIR [--reps 3] [--duration 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import models  # noqa: E402
from bench.harness import Server  # noqa: E402
from bench.loadgen import Target, run_load  # noqa: E402

SCENARIOS = {  # name: (model folder, connections, body builder)
    "add JSON c32": ("add", 32, lambda: (models.json_body(models.add_inputs()), {})),
    "resnet50 binary c8": ("resnet", 8, lambda: _binary(models.image_inputs())),
}


def _binary(inputs: dict) -> tuple[bytes, dict[str, str]]:
    body, header_length = models.binary_body(inputs)
    return body, {"Inference-Header-Content-Length": str(header_length)}


def serve(label: str, tree: Path, config: Path, log_dir: Path) -> Server:
    # -P: no working directory on sys.path, so PYTHONPATH alone says which tree is imported.
    command = [sys.executable, "-P", "-m", "fastserve", "--config_path", str(config), "--rest_port", "0",
               "--rest_bind_address", "127.0.0.1"]
    return Server(label, command, log_dir, env={"PYTHONPATH": str(tree)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fastserve-compare-"))
    models.save(models.build_add_model(), root, "add")
    models.save(models.build_resnet50(), root, "resnet")
    served = [models.ServedModel("add", "add", {}), models.ServedModel("resnet", "resnet", {})]
    config = models.write_config(root, served)
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for scenario, (model, connections, builder) in SCENARIOS.items():
        body, headers = builder()
        body_file = root / f"{model}.body"
        body_file.write_bytes(body)
        for _ in range(args.reps):
            for label, tree in (("before", args.before), ("after", args.after)):
                server = serve(label, tree.resolve(), config, root)
                try:
                    target = Target(f"{server.url}/v2/models/{model}/infer", "POST", body_file, headers)
                    run_load(target, connections, 1.0)  # warm-up
                    cpu_before = server.cpu_seconds()
                    result = run_load(target, connections, args.duration)
                    cpu_us = (server.cpu_seconds() - cpu_before) / max(result.requests, 1) * 1e6
                finally:
                    server.stop()
                figures.setdefault((scenario, label), []).append((result.rps, result.p99_ms, cpu_us))
                print(f"{scenario:20} {label:6} {result.rps:9.0f} req/s  p99 {result.p99_ms:7.2f} ms  "
                      f"{cpu_us:8.1f} us CPU/req  errors {result.errors}", flush=True)
    print("\nmedians (after/before):")
    for scenario in SCENARIOS:
        med = {label: [statistics.median(v[i] for v in figures[(scenario, label)]) for i in range(3)]
               for label in ("before", "after")}
        b, a = med["before"], med["after"]
        print(f"{scenario:20} req/s {b[0]:.0f} -> {a[0]:.0f} ({a[0] / b[0]:.2f}x); p99 {b[1]:.2f} -> {a[1]:.2f} ms; "
              f"CPU/req {b[2]:.1f} -> {a[2]:.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
