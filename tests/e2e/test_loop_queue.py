"""The event loop's queue (fastserve/core/admission.py): inline requests past --max_queue_size in one
turn of the loop get 503 with Retry-After at once, the others are answered, and every connection
stays usable.

How the queue is filled without depending on the CPU's speed: a pipeline whose custom node runs
on the event loop (RUN_INLINE) and waits for the test's gate blocks the loop; while it is
blocked the test sends one `add` request (an inline model) on each of several connections the
server has already accepted, so they are all readable in the loop's next turn; then it opens
the gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gates import NODE_FILE, Gate, gated_request
from tests.modelzoo import add_model, save
from tests.rawhttp import Conn, Reply, build, get
from tests.serverproc import ServerProcess

LIMIT = 2
ADD = json.dumps({"inputs": [
    {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
    {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10},
]}).encode()  # fmt: skip
ADD_REQUEST = build("POST", "/v2/models/add/infer", ADD, {"Content-Type": "application/json"})


def write_repository(root: Path, gate: Gate) -> Path:
    """add (inline) and the pipeline "gated", whose node holds the event loop until the gate opens."""
    node = root / "loop_gate_node.py"
    node.write_text(NODE_FILE.read_text() + "\nRUN_INLINE = True  # holds the event loop itself\n")
    save(add_model(), root / "add")
    doc = {
        "model_config_list": [{"config": {"name": "add", "base_path": "add", "execution_mode": "inline"}}],
        "custom_node_library_config_list": [{"name": "gate", "base_path": str(node)}],
        "pipeline_config_list": [{
            "name": "gated", "inputs": ["x"],
            "nodes": [{"name": "hold", "type": "custom", "library_name": "gate", "params": {"dir": str(gate.folder)},
                       "inputs": [{"x": {"node_name": "request", "data_item": "x"}}],
                       "outputs": [{"data_item": "y", "alias": "y"}]}],
            "outputs": [{"y": {"node_name": "hold", "data_item": "y"}}],
        }],
    }  # fmt: skip
    path = root / "config.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Gate]]:
    root = tmp_path_factory.mktemp("loop_queue")
    gate = Gate(root / "gate")
    with ServerProcess("--config_path", str(write_repository(root, gate)), "--max_queue_size", str(LIMIT)) as proc:
        yield proc, gate


def burst(server: ServerProcess, gate: Gate, count: int) -> tuple[list[Conn], list[Reply]]:
    """`count` add requests read in one turn of the loop; the connections (open) and their replies."""
    for stale in gate.folder.iterdir():  # the gate closed again, no calls counted
        stale.unlink()
    conns = [Conn(server.port, timeout=60) for _ in range(count)]
    for conn in conns:  # accepted and idle before the loop is held
        assert conn.request("GET", "/v2/health/live").status == 200
    holder = Conn(server.port, timeout=60)
    try:
        holder.send(gated_request())
        gate.wait_entered(1)  # the event loop is inside the node now
        for conn in conns:
            conn.send(ADD_REQUEST)
        gate.open()
        assert holder.read().status == 200
    finally:
        holder.close()
    return conns, [conn.read() for conn in conns]


def test_inline_requests_past_the_loop_queue_get_503_with_retry_after(queued: tuple[ServerProcess, Gate]) -> None:
    server, gate = queued
    conns, replies = burst(server, gate, 6)
    try:
        statuses = [r.status for r in replies]
        assert sorted(statuses) == [200] * LIMIT + [503] * (6 - LIMIT), statuses
        for reply in replies:
            if reply.status == 200:
                assert sorted(o["name"] for o in reply.json()["outputs"]) == ["diff", "sum"]
            else:
                assert reply.headers["retry-after"] == "1"
                assert reply.headers["content-type"] == "application/json"
                assert reply.json() == {"error": "Too many requests waiting for model add"}
        # Every connection is still usable: the next request on each, one at a time, is served.
        for conn in conns:
            reply = conn.request("POST", "/v2/models/add/infer", ADD, {"Content-Type": "application/json"})
            assert reply.status == 200, reply.body
    finally:
        for conn in conns:
            conn.close()
    assert get(server.port, "/v2/health/ready").status == 200


def test_a_burst_within_the_limit_is_all_served(queued: tuple[ServerProcess, Gate]) -> None:
    conns, replies = burst(*queued, LIMIT)
    for conn in conns:
        conn.close()
    assert [r.status for r in replies] == [200] * LIMIT
