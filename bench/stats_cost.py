"""What do the always-on Triton statistics (fastserve/triton/stats.py) cost per request?

Rules: in-process only (no sockets, no OpenVINO in the main table). The inference core's infer()
runs on a stub target that answers at once, with the statistics as shipped and with them
swapped for no-ops (count_success and InferStats.fail), in this thread's CPU time, variants
interleaved, best of several rounds: steady on a shared machine. The one perf_counter() the
statistics add at the core's entry stays in both variants, so it is timed on its own and added.
With --full the bundled demo `add` model also runs inline through App.handle (the whole request
path minus HTTP parsing and writing), the same two variants: only meaningful on a quiet machine.

    python bench/stats_cost.py [--full] [--rounds 7] [--iterations 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from fastserve.core import inference  # noqa: E402
from fastserve.core.inference import InferenceCore  # noqa: E402
from fastserve.models.slots import InferResult  # noqa: E402
from fastserve.triton.stats import InferStats, count_success  # noqa: E402
from fastserve.v2.types import InferRequest, RequestedOutput, TensorSpec  # noqa: E402

BODY = orjson.dumps({"inputs": [
    {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
]})


class StubTarget:
    """A model version that binds nothing and answers at once (an InferResult, as an inline model does)."""

    name, version_text = "add", "1"

    def __init__(self) -> None:
        spec = TensorSpec("sum", None, "f32", ((1, 1), (4, 4)), 0)
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs = {"sum": spec}
        self.stats = InferStats()
        self.arrays = [np.zeros((1, 4), np.float32)]
        self.result = InferResult(self.arrays, None, None, 3.0, 100.0)  # type: ignore[arg-type]

    def bind(self, decoded: InferRequest) -> list[np.ndarray]:
        return self.arrays

    def image_bytes(self, decoded: InferRequest) -> int:
        return 0

    def infer(self, arrays: list[np.ndarray], wanted: list[int]) -> InferResult:
        return self.result


def _noop(*args: Any) -> None:
    return None


class Statistics:
    """Switches the core's statistics calls between the shipped ones and no-ops."""

    def __enter__(self) -> Statistics:
        return self

    def off(self) -> None:
        inference.count_success = _noop  # type: ignore[assignment]
        InferStats.fail = _noop  # type: ignore[method-assign]

    def on(self) -> None:
        inference.count_success = count_success
        InferStats.fail = FAIL  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        self.on()


FAIL = InferStats.fail


def core_ns(iterations: int, rounds: int) -> dict[str, float]:
    core = InferenceCore(None)  # type: ignore[arg-type]
    target = StubTarget()
    decoded = InferRequest(None, {}, [], [RequestedOutput("sum", None, {})])
    best = {"statistics off": float("inf"), "statistics on": float("inf")}
    with Statistics() as switch:
        for _ in range(rounds):
            for label in best:
                switch.on() if label == "statistics on" else switch.off()
                started = time.thread_time()
                for _ in range(iterations):
                    core.infer(target, decoded)  # type: ignore[arg-type]
                best[label] = min(best[label], (time.thread_time() - started) / iterations * 1e9)
    started = time.thread_time()
    clock = time.perf_counter
    for _ in range(iterations):
        clock()
    best["one perf_counter()"] = (time.thread_time() - started) / iterations * 1e9
    return best


def app_us(requests: int, rounds: int) -> dict[str, float]:
    from fastserve.cli import build_parser, settings_from_args
    from fastserve.handlers import App
    from fastserve.http.request import Request
    from fastserve.http.response import Response
    from fastserve.models.repository import Repository

    settings = settings_from_args(build_parser().parse_args([]))  # the bundled demo models
    settings = replace(settings, models=tuple(replace(m, execution_mode="inline") for m in settings.models))
    repository = Repository(settings.models, None)
    repository.load_all(repository.plan())
    handle: Callable[[Request], object] = App(settings, repository).handle

    def one_round() -> float:
        started = time.thread_time()
        for _ in range(requests):
            response = handle(Request(b"POST", b"/v2/models/add/infer", {}, BODY, True, False))
            assert type(response) is Response and response.status == 200, response
        return (time.thread_time() - started) / requests * 1e6

    one_round()  # warm-up
    best = {"statistics off": float("inf"), "statistics on": float("inf")}
    with Statistics() as switch:
        for _ in range(rounds):
            for label in best:
                switch.on() if label == "statistics on" else switch.off()
                best[label] = min(best[label], one_round())
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time App.handle on the demo add model")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=100_000)
    args = parser.parse_args(argv)
    core = core_ns(args.iterations, args.rounds)
    added = core["statistics on"] - core["statistics off"] + core["one perf_counter()"]
    print("| InferenceCore.infer on a stub target | CPU ns per request (best round) |")
    print("|---|---:|")
    for label, ns in core.items():
        print(f"| {label} | {ns:.0f} |")
    print(f"| **added by the statistics** (on - off + one perf_counter()) | **{added:.0f}** |")
    if args.full:
        app = app_us(2000, args.rounds)
        print()
        print("| App.handle, demo add model, inline | CPU us per request (best round) |")
        print("|---|---:|")
        for label, us in app.items():
            print(f"| {label} | {us:.2f} |")
        print(f"| added by the statistics | {app['statistics on'] - app['statistics off']:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
