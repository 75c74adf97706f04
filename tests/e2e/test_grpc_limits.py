"""gRPC under pressure: deadlines, cancellation, a full queue, message limits and the memory quota.

Work in flight is the spin model (tests/slowwork.py), sized by measurement to many times the
deadline it must outlast; two such calls hold both of its infer requests (fastserve's least
is 2), so one more must wait. The server's own metrics say when a call is running or waiting
(no sleeps).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from tests.grpcstub import SERVICE, Stub, infer_request, output_arrays
from tests.opsrepo import write_ops_repository
from tests.rawhttp import get
from tests.serverproc import ServerProcess
from tests.slowwork import spin_input, spin_rows
from tests.unit.test_metrics import key, samples

DEADLINE = 0.3  # seconds; the running calls are sized to 10x this
METRICS = ["ovms_requests_success", "ovms_requests_fail", "ovms_current_requests", "ovms_infer_req_active",
           "ovms_request_time_us", "ovms_inference_time_us"]



@pytest.fixture(scope="session")
def server(grpc_server: ServerProcess) -> ServerProcess:
    """The zoo's server on each gRPC transport in turn (tests/conftest.py: grpc_transport)."""
    return grpc_server

@pytest.fixture(scope="module")
def rows() -> int:
    return spin_rows(10 * DEADLINE)


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, rows: int, grpc_transport: str) -> Iterator[ServerProcess]:
    config = write_ops_repository(tmp_path_factory.mktemp("grpc_busy"), ("spin", "add"),
                                  {"spin": {"nireq": 2, "execution_mode": "async"}},
                                  top={"monitoring": {"metrics": {"enable": True, "metrics_list": METRICS}}})
    with ServerProcess("--config_path", str(config), "--max_queue_size", "1", grpc=True,
                       grpc_transport=grpc_transport) as proc:
        # Both infer requests once at the tests' shape: a shape new to a request makes OpenVINO
        # reshape it, which can wait for the other request's inference, and then no two would run at once.
        stub = Stub(proc.grpc_host)
        for call in [spin_call(stub, rows) for _ in range(2)]:
            call.result()
        yield proc


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, grpc_transport: str) -> Iterator[ServerProcess]:
    config = write_ops_repository(tmp_path_factory.mktemp("grpc_limited"), ("dynamic",))
    with ServerProcess("--config_path", str(config), "--grpc_memory_quota", "200000",
                       "--grpc_channel_arguments", "grpc.max_receive_message_length=400000", grpc=True,
                       grpc_transport=grpc_transport) as proc:
        yield proc


def gauge(server: ServerProcess, metric: str, model: str = "spin") -> float:
    return samples(get(server.port, "/metrics").body)[key(metric, name=model, version="1")]


def wait_gauge(server: ServerProcess, metric: str, value: float, timeout: float = 30.0,
               calls: tuple[grpc.Future, ...] = (), give_up: bool = False) -> bool:
    """Until the gauge shows `value`; a call of `calls` that failed raises, and with `give_up` one that
    ended at all makes it return False."""
    started = time.monotonic()
    seen: list[tuple[float, float, list[bool]]] = []
    while (now := gauge(server, metric)) != value:
        for call in calls:
            if call.done():
                call.result()  # raises what the call got
                if give_up:
                    return False
        if not seen or seen[-1][1] != now:
            seen.append((round(time.monotonic() - started, 2), now, [c.done() for c in calls]))
        assert time.monotonic() < started + timeout, f"{metric} never became {value}: {seen}"
        time.sleep(0.01)
    return True


def spin_call(stub: Stub, rows: int, timeout: float = 120.0) -> grpc.Future:
    request = infer_request("spin", {"x": ("FP32", spin_input(rows))}).SerializeToString()
    return stub.channel.unary_unary(SERVICE + "ModelInfer").future(request, timeout=timeout)


def test_a_call_past_its_deadline_is_dropped_from_the_queue_not_run(busy: ServerProcess, rows: int) -> None:
    stub = Stub(busy.grpc_host)
    running = [spin_call(stub, rows) for _ in range(2)]
    wait_gauge(busy, "ovms_infer_req_active", 2, calls=tuple(running))
    waiting = spin_call(stub, rows, timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as caught:
        waiting.result()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server let go of it while the only infer request was still busy: it never ran.
    wait_gauge(busy, "ovms_current_requests", 2, calls=tuple(running))
    assert not any(call.done() for call in running)
    assert all(b"spin" in call.result() for call in running)
    wait_gauge(busy, "ovms_current_requests", 0)


def test_a_full_queue_is_resource_exhausted_and_a_cancelled_call_frees_its_place(busy: ServerProcess,
                                                                                 rows: int) -> None:
    # The steps below send three more calls of the running calls' size; on a loaded machine they
    # can outlast the running calls, and then the round proves nothing: it runs again with calls
    # twice as long (the spin model's cost is measured, so this is scaling, not waiting).
    for scale in (1, 2, 4):
        if _full_queue_round(busy, rows * scale):
            return
    pytest.fail("the running calls finished before every round's steps, at 4x their measured size")


def _full_queue_round(busy: ServerProcess, rows: int) -> bool:
    """The test's steps with calls of `rows`; False when a running call ended before they were done."""
    stub = Stub(busy.grpc_host)
    running = [spin_call(stub, rows) for _ in range(2)]
    try:
        wait_gauge(busy, "ovms_infer_req_active", 2, calls=tuple(running))
        queued = spin_call(stub, rows)
        if not wait_gauge(busy, "ovms_current_requests", 3, calls=tuple(running), give_up=True):
            queued.cancel()
            return False
        code, details = stub.status("ModelInfer", infer_request("spin", {"x": ("FP32", spin_input(rows))}))
        if any(call.done() for call in running):
            queued.cancel()
            return False  # the refusal may have met a queue that was no longer full
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(
            "Too many requests waiting for model spin")
        assert queued.cancel()
        wait_gauge(busy, "ovms_current_requests", 2)  # its place in the queue is free again...
        again = spin_call(stub, rows)
        # ...and taken by the next call
        if not wait_gauge(busy, "ovms_current_requests", 3, calls=tuple(running), give_up=True):
            again.result()
            return False
        assert all(b"spin" in call.result() for call in [*running, again])
        return True
    finally:
        for call in running:
            call.result()  # the server is idle again before the next round or test
        wait_gauge(busy, "ovms_current_requests", 0)


def test_grpc_calls_are_counted_with_interface_grpc(busy: ServerProcess) -> None:
    stub = Stub(busy.grpc_host)
    before = samples(get(busy.port, "/metrics").body)
    a = np.ones((1, 10), np.float32)
    stub.call("ModelInfer", infer_request("add", {"a": ("FP32", a), "b": ("FP32", a)}))
    stub.status("ModelInfer", infer_request("add", {"a": ("FP32", a)}))
    after = samples(get(busy.port, "/metrics").body)
    labels = {"api": "KServe", "method": "ModelInfer", "name": "add", "version": "1"}
    for metric, interface, change in [("ovms_requests_success", "gRPC", 1), ("ovms_requests_fail", "gRPC", 1),
                                      ("ovms_requests_success", "REST", 0)]:
        series = key(metric, interface=interface, **labels)
        assert after[series] - before[series] == change, series
    histogram = key("ovms_request_time_us_count", interface="gRPC", name="add", version="1")
    assert after[histogram] - before[histogram] == 1


def dynamic_request(nbytes: int) -> bytes:
    x = np.ones((1, nbytes // 4), np.float32)
    return infer_request("dynamic", {"x": ("FP32", x)}).SerializeToString()


def test_memory_quota_and_message_limit(limited: ServerProcess) -> None:
    stub = Stub(limited.grpc_host)
    x = np.ones((1, 25_000), np.float32)  # 100 KB: within both
    np.testing.assert_array_equal(output_arrays(stub.call("ModelInfer", dynamic_request(x.nbytes)))["y"], 2 * x)
    code, details = stub.status("ModelInfer", dynamic_request(300_000))  # over the 200 KB quota
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--grpc_memory_quota" in details, details
    code, details = stub.status("ModelInfer", dynamic_request(500_000))  # over the 400 KB receive limit
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details, details
    np.testing.assert_array_equal(output_arrays(stub.call("ModelInfer", dynamic_request(x.nbytes)))["y"], 2 * x)


def test_a_100_mb_message_both_ways_under_ovms_1_gib_limit(server: ServerProcess) -> None:
    stub = Stub(server.grpc_host)
    x = np.arange(25_000_000, dtype=np.float32).reshape(5000, 5000)  # 100 MB in, 100 MB out
    response = stub.call("ModelInfer", infer_request("dynamic", {"x": ("FP32", x)}), timeout=300)
    assert len(response.raw_output_contents[0]) == x.nbytes
    np.testing.assert_array_equal(output_arrays(response)["y"], 2 * x)


def test_the_default_client_limit_is_the_clients_not_the_servers(server: ServerProcess) -> None:
    stub = Stub(server.grpc_host, options=[])  # grpcio clients receive at most 4 MiB by default
    x = np.ones((1, 2_000_000), np.float32)  # 8 MB back
    code, _ = stub.status("ModelInfer", infer_request("dynamic", {"x": ("FP32", x)}))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    Stub(server.grpc_host).call("ModelInfer", infer_request("dynamic", {"x": ("FP32", x[:, :10])}))
