"""/metrics on a real server: OVMS's series move as requests succeed and fail; Server-Timing on demand."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.cpus import needs_two_cpus
from tests.opsrepo import write_ops_repository
from tests.rawhttp import Conn, get, post_json
from tests.serverproc import ServerProcess
from tests.slowwork import spin_body, spin_request, spin_rows
from tests.unit.test_metrics import key, samples

ADD = {"inputs": [
    {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
    {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10},
]}
TIMING = re.compile(r"^decode;dur=([\d.]+), queue;dur=([\d.]+), infer;dur=([\d.]+), encode;dur=([\d.]+), "
                    r"total;dur=([\d.]+)$")


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The optional families come from config.json's OVMS "monitoring" section; enabling from the flag.
    monitoring = {"monitoring": {"metrics": {"metrics_list": [
        "ovms_requests_success", "ovms_requests_fail", "ovms_request_time_us", "ovms_inference_time_us",
        "ovms_wait_for_infer_req_time_us", "ovms_current_requests", "ovms_streams", "ovms_infer_req_queue_size",
        "ovms_infer_req_active"]}}}
    config = write_ops_repository(tmp_path_factory.mktemp("metered"), ("add", "failing", "spin"),
                                  {"spin": {"nireq": 2}}, top=monitoring)
    with ServerProcess("--config_path", str(config), "--metrics_enable", "--server_timing_enable") as proc:
        yield proc


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = get(port, "/metrics")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return samples(reply.body)


def infer_key(metric: str, model: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return key(metric, api="KServe", interface="REST", method="ModelInfer", name=model, version="1")


def test_metrics_are_off_by_default(server: ServerProcess) -> None:
    reply = get(server.port, "/metrics")
    assert reply.status == 404 and reply.json() == {"error": "Invalid request URL"}
    reply = post_json(server.port, "/v2/models/add/infer", ADD)
    assert reply.status == 200 and "server-timing" not in reply.headers


@needs_two_cpus
def test_counters_move_as_requests_succeed_and_fail(metered: ServerProcess) -> None:
    before = scrape(metered.port)
    client = httpclient.InferenceServerClient(metered.host)
    try:
        for binary in (True, False, True):
            a = httpclient.InferInput("a", [1, 10], "FP32")
            a.set_data_from_numpy(np.arange(10, dtype=np.float32).reshape(1, 10), binary_data=binary)
            b = httpclient.InferInput("b", [1, 10], "FP32")
            b.set_data_from_numpy(np.ones((1, 10), np.float32), binary_data=binary)
            result = client.infer("add", [a, b])
            assert result.as_numpy("sum").tolist() == [[float(i + 1) for i in range(10)]]
        bad = httpclient.InferInput("a", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
        with pytest.raises(InferenceServerException, match="400|shape"):
            client.infer("add", [bad])
        x = httpclient.InferInput("x", [4], "FP32")
        x.set_data_from_numpy(np.zeros(4, np.float32))
        shape = httpclient.InferInput("shape", [2], "INT64")
        shape.set_data_from_numpy(np.array([3, 3], np.int64))  # 9 != 4 elements: fails inside OpenVINO
        with pytest.raises(InferenceServerException):
            client.infer("failing", [x, shape])
        with pytest.raises(InferenceServerException):
            client.infer("no_such_model", [bad])
        assert client.get_model_metadata("add")["name"] == "add"
        assert client.is_model_ready("add")
        assert not client.is_model_ready("add", "7")  # the model exists, version 7 does not: a failure
    finally:
        client.close()
    after = scrape(metered.port)

    def delta(k: tuple[str, tuple[tuple[str, str], ...]]) -> float:
        return after[k] - before.get(k, 0.0)

    assert delta(infer_key("ovms_requests_success", "add")) == 3
    assert delta(infer_key("ovms_requests_fail", "add")) == 1
    assert delta(infer_key("ovms_requests_fail", "failing")) == 1
    assert delta(infer_key("ovms_requests_success", "failing")) == 0
    metadata = key("ovms_requests_success", api="KServe", interface="REST", method="ModelMetadata", name="add",
                   version="1")
    assert delta(metadata) == 1
    ready = dict(api="KServe", interface="REST", method="ModelReady", name="add")
    assert delta(key("ovms_requests_success", **ready)) == 1
    assert delta(key("ovms_requests_fail", **ready)) == 1
    labels = {"name": "add", "version": "1"}
    assert delta(key("ovms_request_time_us_count", interface="REST", **labels)) == 3
    assert delta(key("ovms_request_time_us_sum", interface="REST", **labels)) > 0
    assert delta(key("ovms_inference_time_us_count", **labels)) == 3
    assert delta(key("ovms_wait_for_infer_req_time_us_count", **labels)) == 3
    assert after[key("ovms_inference_time_us_bucket", le="+Inf", **labels)] == after[
        key("ovms_inference_time_us_count", **labels)]
    assert after[key("ovms_current_requests", **labels)] == 0
    assert after[key("ovms_streams", **labels)] >= 1
    assert after[key("ovms_infer_req_queue_size", name="spin", version="1")] == 2  # nireq from config.json
    # Names and versions that are not served never become series (no label growth from requests).
    assert not any(dict(labels_).get("name") == "no_such_model" for _, labels_ in after)
    assert not any(dict(labels_).get("version") == "7" for _, labels_ in after)


def test_current_requests_and_queue_while_the_model_is_busy(metered: ServerProcess) -> None:
    labels = {"name": "spin", "version": "1"}
    before = scrape(metered.port)
    conns = [Conn(metered.port, timeout=60) for _ in range(4)]
    request = spin_request(spin_rows(0.5))  # sized to take 0.5 s here: 100 scrapes see the queue
    try:
        for conn in conns:
            conn.send(request)  # nireq 2, so two of them wait
        busy: dict = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy = scrape(metered.port)
            if busy[key("ovms_current_requests", **labels)] >= 3:
                break
            time.sleep(0.005)
        assert busy[key("ovms_current_requests", **labels)] >= 3
        assert busy[key("ovms_infer_req_active", **labels)] == 2
        assert all(conn.read().status == 200 for conn in conns)
    finally:
        for conn in conns:
            conn.close()
    after = scrape(metered.port)
    assert after[key("ovms_current_requests", **labels)] == 0
    assert after[key("ovms_infer_req_active", **labels)] == 0

    def moved(metric: str) -> float:
        return after[key(metric, **labels)] - before.get(key(metric, **labels), 0)

    # The two that waited each waited for a whole inference of one of the first two: together at
    # least the shortest inference, which the server itself measured (a bound of half of the mean).
    waited, inferred = moved("ovms_wait_for_infer_req_time_us_sum"), moved("ovms_inference_time_us_sum")
    assert moved("ovms_inference_time_us_count") == 4
    assert waited > inferred / 4 / 2, (waited, inferred)
    assert after[key("ovms_requests_success", api="KServe", interface="REST", method="ModelInfer",
                     **labels)] - before.get(infer_key("ovms_requests_success", "spin"), 0) == 4


def test_server_timing_header(metered: ServerProcess) -> None:
    with Conn(metered.port) as conn:
        reply = conn.request("POST", "/v2/models/spin/infer", *spin_body(spin_rows(0.05)))
        assert reply.status == 200, reply.body
        found = TIMING.match(reply.headers["server-timing"])
        assert found, reply.headers["server-timing"]
        decode, queue, infer, encode, total = (float(v) for v in found.groups())
        assert infer > 5  # ms: an inference sized to take 50 ms here
        assert decode + queue + infer + encode <= total + 0.01
        # Errors carry no timing; other endpoints neither.
        reply = conn.request("POST", "/v2/models/add/infer", b'{"inputs": []}')
        assert reply.status == 400 and "server-timing" not in reply.headers
        assert "server-timing" not in conn.request("GET", "/v2/models/add").headers
