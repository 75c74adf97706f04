"""The event loop's queue over gRPC (fastserve/core/admission.py): ModelInfer calls past
--max_queue_size waiting together for the loop get RESOURCE_EXHAUSTED at once, the others are
answered, and every connection stays usable.

How the queue is filled without depending on the CPU's speed: as tests/e2e/test_loop_queue.py,
a pipeline node that runs on the event loop waits for the test's gate; while the loop is held
the test writes one raw HTTP/2 ModelInfer call on each of several connections that finished
their handshake before, then opens the gate.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from fastserve.grpc.proto.inference_pb2 import ModelInferResponse
from tests.e2e.test_loop_queue import write_repository
from tests.gates import Gate, gated_request
from tests.grpcstub import infer_request
from tests.h2client import RawH2, grpc_frame
from tests.rawhttp import Conn
from tests.serverproc import ServerProcess

LIMIT = 2
INFER = "/inference.GRPCInferenceService/ModelInfer"
LIVE = "/inference.GRPCInferenceService/ServerLive"
A = np.arange(10, dtype=np.float32).reshape(1, 10)
B = np.ones((1, 10), dtype=np.float32)
CALL = grpc_frame(infer_request("add", {"a": ("FP32", A), "b": ("FP32", B)}).SerializeToString())


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Gate]]:
    root = tmp_path_factory.mktemp("loop_queue_grpc")
    gate = Gate(root / "gate")
    config = write_repository(root, gate)
    with ServerProcess("--config_path", str(config), "--max_queue_size", str(LIMIT), grpc=True) as proc:
        yield proc, gate


def served(client: RawH2, sid: int) -> tuple[bytes | None, bytes, bytes]:
    """(grpc-status, DATA, grpc-message) of the call."""
    found = client.answer(sid)
    return found["status"], found["data"], found["message"]


def burst(server: ServerProcess, gate: Gate, count: int) -> tuple[list[RawH2], list[tuple[bytes | None, bytes, bytes]]]:
    """`count` ModelInfer calls waiting together for the held loop; the connections and answers."""
    for stale in gate.folder.iterdir():
        stale.unlink()
    clients = [RawH2("127.0.0.1", server.grpc_port, timeout=60) for _ in range(count)]
    for client in clients:  # handshake done and a call answered before the loop is held
        assert served(client, client.request(LIVE, grpc_frame(b"")))[0] == b"0"
        client.events.clear()
    holder = Conn(server.port, timeout=60)
    try:
        holder.send(gated_request())
        gate.wait_entered(1)  # the event loop is inside the node now
        sids = [client.request(INFER, CALL) for client in clients]
        gate.open()
        assert holder.read().status == 200
    finally:
        holder.close()
    return clients, [served(client, sid) for client, sid in zip(clients, sids, strict=True)]


def test_calls_past_the_loop_queue_are_resource_exhausted(queued: tuple[ServerProcess, Gate]) -> None:
    server, gate = queued
    clients, answers = burst(server, gate, 6)
    try:
        statuses = sorted(status or b"" for status, _, _ in answers)
        assert statuses == [b"0"] * LIMIT + [b"8"] * (6 - LIMIT), statuses  # 8: RESOURCE_EXHAUSTED
        for status, data, message in answers:
            if status == b"0":
                reply = ModelInferResponse.FromString(data[5:])
                assert sorted(o.name for o in reply.outputs) == ["diff", "sum"]
            else:
                assert message == b"Too many requests waiting for model add"
        for client in clients:  # every connection still serves its next call
            client.events.clear()
            assert served(client, client.request(INFER, CALL))[0] == b"0"
    finally:
        for client in clients:
            client.close()


def test_a_burst_within_the_limit_is_all_served(queued: tuple[ServerProcess, Gate]) -> None:
    clients, answers = burst(*queued, LIMIT)
    for client in clients:
        client.close()
    assert [status for status, _, _ in answers] == [b"0"] * LIMIT
