"""The metrics registry and its text format: OVMS's names, labels and buckets, valid Prometheus text."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastserve.core.trace import Trace
from fastserve.metrics import BUCKETS, DEFAULT_FAMILIES, Histogram, Metrics, ServableInfo, parse_families
from fastserve.observe import server_timing

OVMS_BUCKETS = [10, 18, 32, 58, 104, 188, 340, 612, 1101, 1983, 3570, 6426, 11568, 20822, 37481, 67466, 121439,
                218591, 393464, 708235, 1274823, 2294682, 4130428, 7434771, 13382588, 24088659, 43359586, 78047255,
                140485060, 252873108, 455171596, 819308872, 1474755971]


SAMPLE = re.compile(r"^([a-z_]+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by its exact name (Prometheus's own parser must accept the text too)."""
    list(text_string_to_metric_families(text.decode()))  # raises on invalid exposition text
    out = {}
    for line in text.decode().splitlines():
        if line.startswith("#"):
            continue
        found = SAMPLE.match(line)
        assert found, line
        labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\\\", "\\")) for k, v in LABEL.findall(found[2])))
        out[(found[1], labels)] = float(found[3])
    return out


def key(metric: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (metric, tuple(sorted(labels.items())))


def test_buckets_are_ovms_buckets() -> None:
    assert list(BUCKETS) == OVMS_BUCKETS


def test_histogram_buckets_are_le_inclusive() -> None:
    h = Histogram()
    for value in (0.5, 10, 10.5, 18, 2e9):
        h.observe(value)
    assert h.count == 5 and h.sum == pytest.approx(0.5 + 10 + 10.5 + 18 + 2e9)
    assert h.counts[0] == 2  # 0.5 and 10 are <= 10
    assert h.counts[1] == 2  # 10.5 and 18 are <= 18
    assert h.counts[-1] == 1  # beyond the last bucket: +Inf only


def test_render_has_ovms_names_types_and_labels() -> None:
    metrics = Metrics()
    counters = metrics.model("resnet", 1)
    counters.succeeded(total_us=150.0, wait_us=5.0, infer_us=100.0)
    counters.succeeded(total_us=3000.0, wait_us=20.0, infer_us=2500.0)
    counters.infer_fail += 1
    counters.meta_ok += 3
    metrics.ready_counts("resnet")[0] += 2
    text = metrics.render([ServableInfo("resnet", 1, streams=2, nireq=4, active=1)])
    found = samples(text)
    assert found[key("ovms_requests_success", api="KServe", interface="REST", method="ModelInfer", name="resnet",
                     version="1")] == 2
    assert found[key("ovms_requests_fail", api="KServe", interface="REST", method="ModelInfer", name="resnet",
                     version="1")] == 1
    assert found[key("ovms_requests_success", api="KServe", interface="REST", method="ModelMetadata",
                     name="resnet", version="1")] == 3
    assert found[key("ovms_requests_success", api="KServe", interface="REST", method="ModelReady",
                     name="resnet")] == 2
    assert found[key("ovms_streams", name="resnet", version="1")] == 2
    assert found[key("ovms_current_requests", name="resnet", version="1")] == 0
    assert found[key("ovms_request_time_us_count", interface="REST", name="resnet", version="1")] == 2
    assert found[key("ovms_request_time_us_sum", interface="REST", name="resnet", version="1")] == 3150
    assert found[key("ovms_request_time_us_bucket", interface="REST", name="resnet", version="1", le="188")] == 1
    assert found[key("ovms_request_time_us_bucket", interface="REST", name="resnet", version="1", le="3570")] == 2
    assert found[key("ovms_inference_time_us_bucket", name="resnet", version="1", le="+Inf")] == 2
    assert found[key("ovms_wait_for_infer_req_time_us_bucket", name="resnet", version="1", le="10")] == 1
    assert found[key("ovms_wait_for_infer_req_time_us_sum", name="resnet", version="1")] == 25
    # The optional families are off by default, as in OVMS.
    assert not any(name.startswith("ovms_infer_req_") for name, _ in found)
    assert b"# TYPE ovms_request_time_us histogram" in text
    assert b"# TYPE ovms_requests_success counter" in text
    assert b"# TYPE ovms_current_requests gauge" in text


def test_every_served_version_has_zero_series_and_nothing_else_does() -> None:
    metrics = Metrics()
    text = metrics.render([ServableInfo("a", 1, 1, 2, 0), ServableInfo("a", 2, 1, 2, 0)])
    found = samples(text)
    versions = {dict(labels).get("version") for name, labels in found if name == "ovms_requests_success"}
    assert versions == {"1", "2", None}  # None: the ModelReady series has no version label
    assert all(value == 0 for (name, _), value in found.items() if name != "ovms_streams")


def test_metrics_list_selects_families_including_optional_ones() -> None:
    metrics = Metrics(parse_families("ovms_infer_req_queue_size, ovms_infer_req_active,ovms_requests_success"))
    found = samples(metrics.render([ServableInfo("m", 3, None, 4, 1)]))
    assert found[key("ovms_infer_req_queue_size", name="m", version="3")] == 4
    assert found[key("ovms_infer_req_active", name="m", version="3")] == 1
    assert {name for name, _ in found} == {"ovms_infer_req_queue_size", "ovms_infer_req_active",
                                            "ovms_requests_success"}


def test_parse_families() -> None:
    assert parse_families(None) == DEFAULT_FAMILIES
    assert parse_families("") == DEFAULT_FAMILIES
    assert parse_families("ovms_current_graphs") == ("ovms_current_graphs",)  # MediaPipe: accepted, never reported
    with pytest.raises(ValueError, match="ovms_bogus"):
        parse_families("ovms_streams,ovms_bogus")


def test_label_values_are_escaped() -> None:
    metrics = Metrics(["ovms_streams"])
    text = metrics.render([ServableInfo('we"ird\\name', 1, 1, 1, 0)])
    assert samples(text)[key("ovms_streams", name='we"ird\\name', version="1")] == 1


def test_server_timing_header() -> None:
    trace = Trace()
    trace.decoded = 1.001
    trace.record(250.0, 1500.0)
    trace.inferred = 1.003
    value = server_timing(trace, 1.0, 1.0035)
    assert value == b"decode;dur=1.000, queue;dur=0.250, infer;dur=1.500, encode;dur=0.500, total;dur=3.500"
