"""Prometheus metrics with OVMS's names, labels and buckets, kept in plain Python counters.

Rules: pure bookkeeping and the text exposition format (version 0.0.4); knows no HTTP, no
OpenVINO, no handlers. Observing is a few integer additions and one bisect on the event-loop
thread (no locks: the loop is the only writer), so a request pays well under a microsecond
per family; rendering happens only when /metrics is scraped. Series exist only for served
model versions (never for names or versions taken from a request), so a client cannot grow
the label space.

Names, types and labels follow OVMS's docs/metrics.md, so OVMS's Grafana dashboard keeps
working: the api "KServe" series of interface "REST", and of "gRPC" when gRPC is served (no TFS
API here). Inference and queue times have no interface label in OVMS either.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, NamedTuple

# OVMS's histogram buckets (model_metric_reporter.cpp): floor(10 * 1.8^i) microseconds for
# i in 0..32, so 10 us .. ~24.6 minutes with ~1.8x resolution.
BUCKETS: tuple[int, ...] = tuple(int(10 * 1.8**i) for i in range(33))
_LE = [b'le="%d"' % b for b in BUCKETS] + [b'le="+Inf"']

# Families OVMS enables with --metrics_enable alone, and the optional ones --metrics_list may add.
DEFAULT_FAMILIES = (
    "ovms_streams",
    "ovms_current_requests",
    "ovms_requests_success",
    "ovms_requests_fail",
    "ovms_request_time_us",
    "ovms_inference_time_us",
    "ovms_wait_for_infer_req_time_us",
)
OPTIONAL_FAMILIES = ("ovms_infer_req_queue_size", "ovms_infer_req_active")
# MediaPipe families: accepted in --metrics_list for OVMS compatibility, never reported (no graphs).
MEDIAPIPE_FAMILIES = ("ovms_current_graphs", "ovms_requests_accepted", "ovms_requests_rejected", "ovms_responses")
KNOWN_FAMILIES = frozenset(DEFAULT_FAMILIES + OPTIONAL_FAMILIES + MEDIAPIPE_FAMILIES)

_HELP = {
    "ovms_streams": ("gauge", "Number of OpenVINO execution streams."),
    "ovms_current_requests": ("gauge", "Number of inference requests currently in process."),
    "ovms_requests_success": ("counter", "Number of successful requests to a model or a DAG."),
    "ovms_requests_fail": ("counter", "Number of failed requests to a model or a DAG."),
    "ovms_request_time_us": ("histogram", "Processing time of requests to a model or a DAG."),
    "ovms_inference_time_us": ("histogram", "Inference execution time in the OpenVINO backend."),
    "ovms_wait_for_infer_req_time_us": ("histogram", "Request waiting time in the scheduling queue."),
    "ovms_infer_req_queue_size": ("gauge", "Inference request queue size (nireq)."),
    "ovms_infer_req_active": ("gauge", "Number of currently consumed inference requests from the processing queue."),
}


class Histogram:
    """Cumulative-on-render histogram: per-bucket counts, sum and count."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value_us: float) -> None:
        self.counts[bisect_left(BUCKETS, value_us)] += 1  # first bucket with le >= value
        self.sum += value_us
        self.count += 1


class InterfaceMetrics:
    """What OVMS counts per interface for one served (name, version): gRPC's, beside REST's fields."""

    __slots__ = ("infer_ok", "infer_fail", "meta_ok", "meta_fail", "request_time")

    def __init__(self) -> None:
        self.infer_ok = 0
        self.infer_fail = 0
        self.meta_ok = 0
        self.meta_fail = 0
        self.request_time = Histogram()


class ModelMetrics:
    """Everything counted for one served (name, version): REST's per-interface counters in its own
    fields (the REST hot path reads no extra attribute), gRPC's in `grpc`."""

    __slots__ = ("infer_ok", "infer_fail", "meta_ok", "meta_fail", "current", "request_time", "inference_time",
                 "wait_time", "grpc")

    def __init__(self) -> None:
        self.infer_ok = 0
        self.infer_fail = 0
        self.meta_ok = 0
        self.meta_fail = 0
        self.current = 0  # requests past admission whose response is not built yet
        self.request_time = Histogram()
        self.inference_time = Histogram()
        self.wait_time = Histogram()
        self.grpc = InterfaceMetrics()

    def succeeded_grpc(self, total_us: float, wait_us: float, infer_us: float) -> None:
        self.grpc.infer_ok += 1
        self.grpc.request_time.observe(total_us)
        self.wait_time.observe(wait_us)
        self.inference_time.observe(infer_us)

    def succeeded(self, total_us: float, wait_us: float, infer_us: float) -> None:
        # Histogram.observe written out three times: the calls were ~20% of this method's cost.
        self.infer_ok += 1
        h = self.request_time
        h.counts[bisect_left(BUCKETS, total_us)] += 1
        h.sum += total_us
        h.count += 1
        h = self.wait_time
        h.counts[bisect_left(BUCKETS, wait_us)] += 1
        h.sum += wait_us
        h.count += 1
        h = self.inference_time
        h.counts[bisect_left(BUCKETS, infer_us)] += 1
        h.sum += infer_us
        h.count += 1


class ServableInfo(NamedTuple):
    """What render() needs to know of a served version besides its counters."""

    name: str
    version: int
    streams: int | None  # None when the device does not report NUM_STREAMS
    nireq: int
    active: int


class Metrics:
    def __init__(self, families: Iterable[str] = DEFAULT_FAMILIES, grpc: bool = False) -> None:
        self.families = frozenset(families)
        self.grpc = grpc  # gRPC is served: its series are reported too
        self.models: dict[tuple[str, int], ModelMetrics] = {}
        self.ready: dict[str, list[int]] = {}  # model name -> [success, fail] of ModelReady over REST
        self.ready_grpc: dict[str, list[int]] = {}  # the same over gRPC

    def model(self, name: str, version: int) -> ModelMetrics:
        key = (name, version)
        found = self.models.get(key)
        if found is None:
            found = self.models[key] = ModelMetrics()
        return found

    def ready_counts(self, name: str, grpc: bool = False) -> list[int]:
        counts = self.ready_grpc if grpc else self.ready
        found = counts.get(name)
        if found is None:
            found = counts[name] = [0, 0]
        return found

    # Exposition

    def render(self, served: Iterable[ServableInfo]) -> bytes:
        """The text format: every enabled family, a series per served version (zeros included)."""
        infos = {(s.name, s.version): s for s in served}
        for key in infos:
            self.model(*key)
        for name, _ in infos:
            self.ready_counts(name)
            if self.grpc:
                self.ready_counts(name, grpc=True)
        keys = sorted(self.models)
        labels = {key: b'name="%s",version="%d"' % (_escape(key[0]), key[1]) for key in keys}
        out: list[bytes] = []
        enabled = self.families

        def family(name: str) -> bool:
            if name not in enabled:
                return False
            kind, text = _HELP[name]
            out.append(b"# HELP %s %s\n# TYPE %s %s\n" % (name.encode(), text.encode(), name.encode(), kind.encode()))
            return True

        if family("ovms_streams"):
            for key in keys:
                info = infos.get(key)
                if info is not None and info.streams is not None:
                    out.append(b"ovms_streams{%s} %d\n" % (labels[key], info.streams))
        if family("ovms_current_requests"):
            for key in keys:
                out.append(b"ovms_current_requests{%s} %d\n" % (labels[key], self.models[key].current))
        for metric, index in (("ovms_requests_success", 0), ("ovms_requests_fail", 1)):
            if not family(metric):
                continue
            name_bytes = metric.encode()
            for interface, ready in self._interfaces(self.ready, self.ready_grpc):
                for model in sorted(ready):
                    out.append(b'%s{api="KServe",interface="%s",method="ModelReady",name="%s"} %d\n'
                               % (name_bytes, interface, _escape(model), ready[model][index]))
                for key in keys:
                    m = self.models[key]
                    c = m if interface == b"REST" else m.grpc
                    infer, meta = (c.infer_ok, c.meta_ok) if index == 0 else (c.infer_fail, c.meta_fail)
                    out.append(b'%s{api="KServe",interface="%s",method="ModelInfer",%s} %d\n'
                               % (name_bytes, interface, labels[key], infer))
                    out.append(b'%s{api="KServe",interface="%s",method="ModelMetadata",%s} %d\n'
                               % (name_bytes, interface, labels[key], meta))
        if family("ovms_request_time_us"):
            for interface, _ in self._interfaces(None, None):
                for key in keys:
                    m = self.models[key]
                    _histogram(out, b"ovms_request_time_us", b'interface="%s",' % interface + labels[key],
                               m.request_time if interface == b"REST" else m.grpc.request_time)
        for metric, attr in (("ovms_inference_time_us", "inference_time"),
                             ("ovms_wait_for_infer_req_time_us", "wait_time")):
            if family(metric):
                for key in keys:
                    _histogram(out, metric.encode(), labels[key], getattr(self.models[key], attr))
        for metric, field in (("ovms_infer_req_queue_size", "nireq"), ("ovms_infer_req_active", "active")):
            if family(metric):
                for key in keys:
                    info = infos.get(key)
                    if info is not None:
                        out.append(b"%s{%s} %d\n" % (metric.encode(), labels[key], getattr(info, field)))
        return b"".join(out)


    def _interfaces(self, rest: Any, grpc: Any) -> list[tuple[bytes, Any]]:
        """(label value, that interface's thing): gRPC first, as OVMS orders its series."""
        return [(b"gRPC", grpc), (b"REST", rest)] if self.grpc else [(b"REST", rest)]


def _histogram(out: list[bytes], name: bytes, labels: bytes, histogram: Histogram) -> None:
    # OVMS prints count and sum first, then the cumulative buckets; Prometheus takes any order.
    out.append(b"%s_count{%s} %d\n" % (name, labels, histogram.count))
    out.append(b"%s_sum{%s} %d\n" % (name, labels, round(histogram.sum)))
    running = 0
    for le, count in zip(_LE, histogram.counts, strict=True):
        running += count
        out.append(b"%s_bucket{%s,%s} %d\n" % (name, labels, le, running))


def _escape(value: str) -> bytes:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").encode()


def parse_families(text: str | None) -> tuple[str, ...]:
    """--metrics_list / monitoring.metrics.metrics_list: comma-separated names; ValueError on unknown ones."""
    if not text:
        return DEFAULT_FAMILIES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in KNOWN_FAMILIES]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} (known: {', '.join(sorted(KNOWN_FAMILIES))})")
    return names
