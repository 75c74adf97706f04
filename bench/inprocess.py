"""The in-process limit: the same compiled model run directly with OpenVINO, no server in between.

Rules: compiled with the properties fastserve uses by default (PERFORMANCE_HINT=LATENCY) and fed
by an AsyncInferQueue with as many jobs as fastserve's pool has infer requests, so the device
never waits for the next request: the ceiling any server on this machine can reach for that
model. Inputs are made once (nothing per inference but the inference). Prints one JSON line.
Usage: python bench/inprocess.py MODEL.xml --seconds 5 [--jobs 2] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.models import random_inputs  # noqa: E402

# fastserve's loader: OVMS's default hint when the config sets neither a hint nor NUM_STREAMS.
COMPILE_PROPERTIES = {"PERFORMANCE_HINT": "LATENCY"}


def measure(path: str, seconds: float, jobs: int, batch: int) -> dict[str, float]:
    core = ov.Core()
    model = core.read_model(path)
    inputs = random_inputs(model, batch)
    compiled = core.compile_model(model, "CPU", COMPILE_PROPERTIES)
    if jobs <= 0:
        # fastserve's pool: OpenVINO's optimal number of requests, at least two.
        jobs = max(int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")), 2)
    queue = ov.AsyncInferQueue(compiled, jobs)
    for _ in range(jobs * 2):  # warm-up: first runs allocate
        queue.start_async(inputs)
    queue.wait_all()
    done = [0]
    queue.set_callback(lambda request, userdata: done.__setitem__(0, done[0] + 1))
    cpu_before = os.times()
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        queue.start_async(inputs)  # blocks while every job is busy
    queue.wait_all()
    elapsed = time.perf_counter() - started
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {"rps": done[0] * batch / elapsed, "inferences": done[0], "seconds": elapsed, "jobs": jobs,
            "cpu_ms_per_item": cpu * 1000 / max(done[0] * batch, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=0, help="parallel infer requests (0: as fastserve's pool)")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.seconds, args.jobs, args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
