"""200 concurrent JSON inferences over 200 raw asyncio sockets, each checked against its own answer.

All 200 connections are opened first, then every request is written before any response is
read, so the server really has 200 requests in flight: on "dynamic" (inline execution) and on
"heavy" (the async path, 2 infer requests for 200 waiting callers). Distinct inputs and ids
make a response delivered to the wrong caller fail. Bounded: 200 requests per model, 127.0.0.1
only, 120 s at most.
"""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import openvino as ov
import orjson

from tests.modelzoo import heavy_model
from tests.serverproc import ServerProcess

CLIENTS = 200
TIMEOUT_S = 120
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")


async def _exchange(port: int, requests: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in requests))
    try:
        for (_, writer), (path, body) in zip(connections, requests, strict=True):
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
        await asyncio.gather(*(writer.drain() for _, writer in connections))

        async def read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            found = _LENGTH.search(head)
            assert found is not None, head
            return status, await reader.readexactly(int(found.group(1)))

        return await asyncio.gather(*(read(reader) for reader, _ in connections))
    finally:
        for _, writer in connections:
            writer.close()


def exchange(port: int, requests: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    return asyncio.run(asyncio.wait_for(_exchange(port, requests), TIMEOUT_S))


def request(i: int, name: str, data: np.ndarray) -> bytes:
    doc = {"id": f"req-{i}", "inputs": [{"name": name, "shape": list(data.shape), "datatype": "FP32", "data": data}]}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def answers(replies: list[tuple[int, bytes]]) -> list[np.ndarray]:
    arrays = []
    for i, (status, body) in enumerate(replies):
        assert status == 200, (i, body[:300])
        doc = json.loads(body)
        assert doc["id"] == f"req-{i}"
        (output,) = doc["outputs"]
        arrays.append(np.array(output["data"], dtype=np.float32).reshape(output["shape"]))
    return arrays


def test_200_concurrent_requests_to_the_dynamic_model(server: ServerProcess) -> None:
    # Request i sends 1-4 rows of quarter steps offset by 100 i: distinct, and exact in FP32.
    inputs = []
    for i in range(CLIENTS):
        rows = 1 + i % 4
        inputs.append(np.arange(i, i + rows * 3, dtype=np.float32).reshape(rows, 3) / 4 + i * 100)
    replies = exchange(
        server.port,
        [("/v2/models/dynamic/infer", request(i, "x", x)) for i, x in enumerate(inputs)],
    )
    for x, y in zip(inputs, answers(replies), strict=True):
        np.testing.assert_array_equal(y, x * 2)


def heavy_reference(inputs: list[np.ndarray]) -> np.ndarray:
    """The heavy model run in this process on every input, FP32 on CPU like the server (throughput
    streams here: about half the time of one-by-one on the 2-core VM, same numbers within 1e-6)."""
    compiled = ov.Core().compile_model(heavy_model(), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    results: list[np.ndarray] = [np.empty(0)] * len(inputs)

    def done(request: ov.InferRequest, index: int) -> None:
        results[index] = request.get_output_tensor(0).data.copy()

    queue = ov.AsyncInferQueue(compiled)
    queue.set_callback(done)
    for index, x in enumerate(inputs):
        queue.start_async([x], index)
    queue.wait_all()
    return np.concatenate(results)


def test_200_concurrent_requests_to_the_heavy_model(server: ServerProcess) -> None:
    assert [line for line in server.log().splitlines() if "loaded model heavy" in line][0].count("async") == 1
    rng = np.random.default_rng(11)
    # Three decimals keep the bodies small (~90 KB): FP32 values print in their shortest form.
    inputs = [np.round(rng.standard_normal((1, 3, 64, 64)), 3).astype(np.float32) for _ in range(CLIENTS)]
    replies = exchange(
        server.port,
        [("/v2/models/heavy/infer", request(i, "x", x)) for i, x in enumerate(inputs)],
    )
    got = np.concatenate(answers(replies))
    expected = heavy_reference(inputs)
    assert got.shape == expected.shape == (CLIENTS, 16)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Distinct inputs give distinct outputs: each answer is nearest to its own expectation.
    distances = np.abs(got[:, None, :] - expected[None, :, :]).sum(axis=2)
    assert (distances.argmin(axis=1) == np.arange(CLIENTS)).all()
