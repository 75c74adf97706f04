"""What do metrics cost per request? Plain-Python counters (fastserve.metrics) against prometheus_client.

Rules: in-process only (no sockets). The main table times what observing adds around a stub
inference (no OpenVINO) in this thread's CPU time, best of 5, where the differences are not lost
in the noise of a shared machine; docs/operations.md quotes it. With --full, the bundled demo
`add` model also runs inline through App.handle (the whole request path minus HTTP parsing and
writing), variants interleaved round after round, best round reported: only meaningful on a
quiet machine, as the inference itself then dominates and varies.

    python bench/metrics_cost.py [--full [--rounds 9] [--requests 1000]]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402

from fastserve.cli import build_parser, settings_from_args  # noqa: E402
from fastserve.handlers import App  # noqa: E402
from fastserve.http.request import Request  # noqa: E402
from fastserve.http.response import Response  # noqa: E402
from fastserve.metrics import BUCKETS  # noqa: E402
from fastserve.models.repository import Repository  # noqa: E402
from fastserve.observe import Observer, Trace  # noqa: E402

BODY = orjson.dumps({"inputs": [
    {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
]})
LABELS = ("api", "interface", "method", "name", "version")


class PromRecorder:
    """The same series kept with prometheus_client (labels looked up per request, as usually written)."""

    def __init__(self, bound: bool) -> None:
        registry = CollectorRegistry()
        buckets = [*BUCKETS, float("inf")]
        self.success = Counter("ovms_requests_success", "", LABELS, registry=registry)
        self.request_time = Histogram("ovms_request_time_us", "", ("interface", "name", "version"),
                                      buckets=buckets, registry=registry)
        self.inference_time = Histogram("ovms_inference_time_us", "", ("name", "version"), buckets=buckets,
                                        registry=registry)
        self.wait_time = Histogram("ovms_wait_for_infer_req_time_us", "", ("name", "version"), buckets=buckets,
                                   registry=registry)
        self.current = Gauge("ovms_current_requests", "", ("name", "version"), registry=registry)
        self.bound = None
        if bound:  # children resolved once per model version, as a careful integration would
            self.bound = (self.success.labels("KServe", "REST", "ModelInfer", "add", "1"),
                          self.request_time.labels("REST", "add", "1"), self.inference_time.labels("add", "1"),
                          self.wait_time.labels("add", "1"))

    def succeeded(self, name: str, version: str, total_us: float, wait_us: float, infer_us: float) -> None:
        if self.bound is not None:
            success, request_time, inference_time, wait_time = self.bound
            success.inc()
            request_time.observe(total_us)
            inference_time.observe(infer_us)
            wait_time.observe(wait_us)
            return
        self.success.labels("KServe", "REST", "ModelInfer", name, version).inc()
        self.request_time.labels("REST", name, version).observe(total_us)
        self.inference_time.labels(name, version).observe(infer_us)
        self.wait_time.labels(name, version).observe(wait_us)


def use_prometheus(observer: Observer, recorder: PromRecorder) -> None:
    """Swap the observer's bookkeeping for prometheus_client's; timing and routing stay the same."""

    def succeeded(trace: Trace, started: float, response: Response) -> Response:
        total_us = (time.perf_counter() - started) * 1e6
        servable = trace.target
        recorder.succeeded(servable.name, servable.version_text, total_us, trace.wait_us, trace.infer_us)
        return response

    observer._succeeded = succeeded  # type: ignore[method-assign]


def build_apps() -> dict[str, Callable[[Request], object]]:
    base = settings_from_args(build_parser().parse_args([]))  # the bundled demo models
    # Inline execution, whatever the warm-up probe would pick on a busy machine: one code path.
    base = replace(base, models=tuple(replace(m, execution_mode="inline") for m in base.models))
    repository = Repository(base.models, None)
    repository.load_all(repository.plan())
    apps: dict[str, Callable[[Request], object]] = {
        "off": App(base, repository).handle,
        "metrics (plain Python)": App(replace(base, metrics_enable=True), repository).handle,
        "metrics + Server-Timing": App(replace(base, metrics_enable=True, server_timing=True), repository).handle,
    }
    for label, bound in (("prometheus_client, labels() per request", False),
                         ("prometheus_client, pre-bound children", True)):
        app = App(replace(base, metrics_enable=True), repository)
        observer = app.routes["infer"].__self__  # type: ignore[attr-defined]
        use_prometheus(observer, PromRecorder(bound))
        apps[label] = app.handle
    return apps


def round_us(handle: Callable[[Request], object], requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        response = handle(Request(b"POST", b"/v2/models/add/infer", {}, BODY, True, False))
        assert type(response) is Response and response.status == 200, response
    return (time.perf_counter() - started) / requests * 1e6


def observer_overhead_ns(iterations: int = 50_000, repeats: int = 5) -> dict[str, float]:
    """What the observed infer route adds around an inference, with a stub in place of the model."""

    class Servable:
        name, version, version_text = "add", 1, "1"

    def stub_infer(request: Request, route: object, trace: Trace | None = None) -> Response:
        if trace is not None:  # what handlers.infer does with a trace
            trace.target = Servable
            trace.decoded = time.perf_counter()
            trace.record(3.0, 100.0)
        return Response(200, b"{}")  # a fresh one, as handlers build: Server-Timing is added to it

    routes = {"infer": stub_infer, "model_metadata": None, "model_ready": None}

    def observed(**flags: bool) -> Callable[[Request, object], object]:
        settings = replace(settings_from_args(build_parser().parse_args([])), **flags)
        return Observer(routes, None, settings).observed_infer  # type: ignore[arg-type]

    prom_labels, prom_bound = observed(metrics_enable=True), observed(metrics_enable=True)
    use_prometheus(prom_labels.__self__, PromRecorder(bound=False))  # type: ignore[attr-defined]
    use_prometheus(prom_bound.__self__, PromRecorder(bound=True))  # type: ignore[attr-defined]
    variants: dict[str, Callable[[Request, object], object]] = {
        "off (handler called directly)": stub_infer,
        "metrics (plain Python)": observed(metrics_enable=True),
        "metrics + Server-Timing": observed(metrics_enable=True, server_timing=True),
        "prometheus_client, labels() per request": prom_labels,
        "prometheus_client, pre-bound children": prom_bound,
    }
    request = Request(b"POST", b"/v2/models/add/infer", {}, BODY, True, False)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for label, call in variants.items():
            started = time.thread_time()  # CPU time of this thread: waiting for a shared core does not count
            for _ in range(iterations):
                call(request, None)
            best[label] = min(best[label], (time.thread_time() - started) / iterations * 1e9)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="also time whole App.handle calls with OpenVINO (only meaningful on a quiet machine)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    overhead = observer_overhead_ns()
    base = overhead["off (handler called directly)"]
    print("| around a stub inference | CPU ns per request | added |")
    print("|---|---:|---:|")
    for label, ns in overhead.items():
        print(f"| {label} | {ns:.0f} | {ns - base:+.0f} ns |")
    if not args.full:
        return 0
    print()
    apps = build_apps()
    for handle in apps.values():
        round_us(handle, 200)  # warm-up
    results: dict[str, list[float]] = {label: [] for label in apps}
    for _ in range(args.rounds):
        for label, handle in apps.items():
            results[label].append(round_us(handle, args.requests))
    off = min(results["off"])
    print("| App.handle, demo add model, inline | us per request (best round) | vs off |")
    print("|---|---:|---:|")
    for label, values in results.items():
        print(f"| {label} | {min(values):.2f} | {min(values) - off:+.2f} us |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
