"""Observed endpoints: OVMS metrics and the Server-Timing header, installed only when enabled.

Rules: `install(routes, ...)` swaps the App's infer, model metadata, model ready and metrics routes
for observed versions; with --metrics_enable and --server_timing_enable both off it is never
called and the hot path runs exactly as without this module. The infer handler fills a
`Trace` (its phase timestamps) only when one is passed. Knows the App's routes, the repository
and Response; no protocol, no OpenVINO calls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from fastserve.core.trace import Trace
from fastserve.errors import FastServeError
from fastserve.http.request import Request
from fastserve.http.response import TEXT, Response
from fastserve.metrics import DEFAULT_FAMILIES, Metrics, ModelMetrics, ServableInfo
from fastserve.models.repository import Repository
from fastserve.router import Route
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.metrics")


class Observer:
    def __init__(self, routes: dict[str, Callable[..., Any]], repository: Repository, settings: ServerSettings) -> None:
        self.repository = repository
        self.metrics = (Metrics(settings.metrics_list or DEFAULT_FAMILIES, grpc=bool(settings.grpc_port))
                        if settings.metrics_enable else None)
        self.timing = settings.server_timing
        self.infer = routes["infer"]
        self.model_metadata = routes["model_metadata"]
        self.model_ready = routes["model_ready"]

    # Infer

    def observed_infer(self, request: Request, route: Route) -> Response | Awaitable[Response]:
        started = perf_counter()
        trace = Trace()
        try:
            result = self.infer(request, route, trace)  # type: ignore[call-arg]
        except Exception:
            self._failed(trace)
            raise
        if type(result) is Response:
            return self._succeeded(trace, started, result)
        return self._later(trace, started, result)  # type: ignore[arg-type]

    async def _later(self, trace: Trace, started: float, pending: Awaitable[Response]) -> Response:
        counters = self._counters(trace)
        if counters is not None:
            counters.current += 1
        try:
            response = await pending
        except BaseException:
            if counters is not None:
                counters.current -= 1
            self._failed(trace)
            raise
        if counters is not None:
            counters.current -= 1
        return self._succeeded(trace, started, response)

    def _counters(self, trace: Trace) -> ModelMetrics | None:
        servable = trace.target
        if self.metrics is None or servable is None:
            return None
        return self.metrics.model(servable.name, servable.version)

    def _failed(self, trace: Trace) -> None:
        counters = self._counters(trace)
        if counters is not None:  # unknown models have no series (OVMS: no reporter, no count)
            counters.infer_fail += 1

    def _succeeded(self, trace: Trace, started: float, response: Response) -> Response:
        ended = perf_counter()
        total_us = (ended - started) * 1e6
        counters = self._counters(trace)
        if counters is not None:
            counters.succeeded(total_us, trace.wait_us, trace.infer_us)
        if self.timing:
            response.headers = (*response.headers, (b"server-timing", server_timing(trace, started, ended)))
        return response

    # Model metadata and readiness (counted per served version / model name, as OVMS does)

    def observed_metadata(self, request: Request, route: Route) -> Response:
        counters = self._metadata_counters(route)
        try:
            response = self.model_metadata(request, route)
        except FastServeError:
            if counters is not None:
                counters.meta_fail += 1
            raise
        if counters is not None:
            counters.meta_ok += 1
        return response

    def _metadata_counters(self, route: Route) -> ModelMetrics | None:
        assert route.model is not None and self.metrics is not None
        try:
            servable = self.repository.get(route.model, route.version)
        except FastServeError:
            return None
        return self.metrics.model(servable.name, servable.version)

    def observed_ready(self, request: Request, route: Route) -> Response:
        assert route.model is not None and self.metrics is not None
        known = route.model in self.repository.models
        try:
            response = self.model_ready(request, route)
        except FastServeError:
            if known:
                self.metrics.ready_counts(route.model)[1] += 1
            raise
        if known:
            self.metrics.ready_counts(route.model)[0] += 1
        return response

    # /metrics

    def scrape(self, request: Request, route: Route) -> Response:
        assert self.metrics is not None
        return Response(200, self.metrics.render(self._served()), TEXT)

    def _served(self) -> list[ServableInfo]:
        served = []
        for model in list(self.repository.models.values()):
            for servable in list(model.versions.values()):
                pool = servable.pool
                served.append(ServableInfo(servable.name, servable.version, servable.streams, pool.size, pool.busy))
        return served


def server_timing(trace: Trace, started: float, ended: float) -> bytes:
    """decode;dur=..., queue;dur=..., infer;dur=..., encode;dur=..., total;dur=... in milliseconds."""
    decode_ms = (trace.decoded - started) * 1e3 if trace.decoded else 0.0
    encode_ms = (ended - trace.inferred) * 1e3 if trace.inferred else 0.0
    return b"decode;dur=%.3f, queue;dur=%.3f, infer;dur=%.3f, encode;dur=%.3f, total;dur=%.3f" % (
        decode_ms, trace.wait_us / 1e3, trace.infer_us / 1e3, encode_ms, (ended - started) * 1e3,
    )


def install(routes: dict[str, Callable[..., Any]], repository: Repository, settings: ServerSettings) -> Observer:
    """Route infer (and, with metrics, metadata, ready and /metrics) through an Observer."""
    observer = Observer(routes, repository, settings)
    routes["infer"] = observer.observed_infer
    if observer.metrics is not None:
        routes["model_metadata"] = observer.observed_metadata
        routes["model_ready"] = observer.observed_ready
        routes["metrics"] = observer.scrape
    return observer
