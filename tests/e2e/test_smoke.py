"""The server starts on the zoo, answers health and serves a JSON inference end to end."""

from __future__ import annotations

from tests.rawhttp import get, post_json
from tests.serverproc import ServerProcess


def test_live_ready_and_add(server: ServerProcess) -> None:
    assert get(server.port, "/v2/health/live").status == 200
    assert get(server.port, "/v2/health/ready").status == 200
    reply = post_json(
        server.port,
        "/v2/models/add/infer",
        {"inputs": [
            {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
            {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10},
        ]},
    )
    assert reply.status == 200, reply.body
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["sum"]["data"] == [float(i + 1) for i in range(10)]
    assert outputs["diff"]["data"] == [float(i - 1) for i in range(10)]
