"""Dynamic batching across transports: REST and gRPC requests to one model join the same batches.

The model (built here) answers y = 2x, so each caller sees its own rows, and t = the sum of
column 0 over the whole batch, so each caller also sees who it was batched with: gRPC rows
carry 1 in column 0 and REST rows 1000, and t = grpc_rows + 1000 * rest_rows of its batch.

Column 1 sets the model's cost: its batch maximum K runs K rows through the spin model's
layers (tests/slowwork.py, cost per row measured here) and adds nothing to the outputs. One
"blocker" request with K sized to take seconds holds the model's only stream; requests that
arrive meanwhile, over either transport, wait in one group until it finishes (the queue delay
is longer than the blocker), so they leave as one batch on any CPU.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest
import tritonclient.grpc.aio as grpcaio

from tests.e2e.test_batching import call
from tests.modelzoo import save
from tests.rawhttp import get
from tests.serverproc import ServerProcess
from tests.slowwork import LAYERS, spin_rows
from tests.slowwork import WIDTH as SPIN_WIDTH
from tests.unit.test_metrics import key, samples

GRPC_TAG, REST_TAG = 1.0, 1000.0
WIDTH = 4


def _column(x: ov.Output, index: int) -> ov.Output:
    return ops.gather(x, ops.constant(np.array([index], np.int64)), ops.constant(np.int64(1))).output(0)  # [N,1]


def batch_tally_model() -> ov.Model:
    """x FP32 [-1,WIDTH] -> y = 2x [N,WIDTH], t FP32 [N] = sum of x[:, 0] over the batch (+ 0 * spin)."""
    x = ops.parameter(ov.PartialShape([-1, WIDTH]), ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.multiply(x, ops.constant(np.float32(2)))
    y.output(0).get_tensor().set_names({"y"})
    axes = ops.constant(np.array([0, 1], np.int64))
    total = ops.reduce_sum(_column(x.output(0), 0), axes, keep_dims=False)
    # The spin: K = max of column 1 rows of tanh(h @ W), LAYERS times; min(|sum|, 0) is 0 for any K.
    k = ops.convert(ops.reduce_max(_column(x.output(0), 1), axes, keep_dims=True), "i64")
    shape = ops.concat([ops.reshape(k, ops.constant(np.array([1], np.int64)), False),
                        ops.constant(np.array([SPIN_WIDTH], np.int64))], 0)
    h = ops.broadcast(ops.constant(np.float32(0.5)), shape).output(0)
    scale = np.float32(1 / np.sqrt(SPIN_WIDTH))
    weight = ops.constant(np.random.default_rng(7).standard_normal((SPIN_WIDTH, SPIN_WIDTH)).astype(np.float32) * scale)
    for _ in range(LAYERS):
        h = ops.tanh(ops.matmul(h, weight, False, False)).output(0)
    nothing = ops.minimum(ops.abs(ops.reduce_sum(h, axes, keep_dims=False)), ops.constant(np.float32(0)))
    total = ops.add(total, nothing)
    rows = ops.gather(ops.shape_of(x, "i64"), ops.constant(np.array([0], np.int64)), ops.constant(np.int64(0)))
    t = ops.broadcast(total, rows)
    t.output(0).get_tensor().set_names({"t"})
    return ov.Model([y.output(0), t.output(0)], [x], "batch_tally")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, grpc_transport: str) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("grpc_batching")
    save(batch_tally_model(), root / "tally")
    entries = [{"name": "tally", "base_path": "tally", "execution_mode": "async", "nireq": 1,
                "plugin_config": {"NUM_STREAMS": 1},  # one batch at a time: the blocker holds the model
                "max_batch_size": 64, "max_queue_delay_microseconds": 120_000_000}]
    config = root / "config.json"
    metrics = {"enable": True, "metrics_list": ["ovms_current_requests"]}
    config.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries],
                                  "monitoring": {"metrics": metrics}}))
    with ServerProcess("--config_path", str(config), grpc=True, grpc_transport=grpc_transport) as proc:
        yield proc


def rows(tag: float, index: int, spin: int = 0) -> np.ndarray:
    x = np.arange(WIDTH, dtype=np.float32).reshape(1, WIDTH) * 0.5 + index
    x[:, 0] = tag
    x[:, 1] = spin
    return x


async def running(server: ServerProcess, timeout: float = 60.0) -> None:
    """Until the blocker is being processed (ovms_current_requests of tally is 1)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        metrics = samples((await loop.run_in_executor(None, get, server.port, "/metrics")).body)
        if metrics.get(key("ovms_current_requests", name="tally", version="1")) == 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the blocker never started")


async def grpc_call(client: grpcaio.InferenceServerClient, x: np.ndarray) -> dict[str, np.ndarray]:
    given = grpcaio.InferInput("x", list(x.shape), "FP32")
    given.set_data_from_numpy(x)
    result = await client.infer("tally", [given])
    return {"y": result.as_numpy("y"), "t": result.as_numpy("t")}


async def all_waiting(server: ServerProcess, count: int, blocker: asyncio.Future) -> bool:
    """True once `count` requests of tally are in flight with the blocker; False if the blocker ended first."""
    loop = asyncio.get_running_loop()
    while not blocker.done():
        metrics = samples((await loop.run_in_executor(None, get, server.port, "/metrics")).body)
        if metrics.get(key("ovms_current_requests", name="tally", version="1")) == count:
            return True
        await asyncio.sleep(0.01)
    return False


async def mixed(server: ServerProcess, count: int, spin_seconds: float) -> tuple[list, list, dict, bool]:
    """`count` gRPC and `count` REST calls sent behind a blocker; the last item: all arrived while it ran."""
    grpc_inputs = [rows(GRPC_TAG, i) for i in range(count)]
    rest_inputs = [rows(REST_TAG, i) for i in range(count)]
    async with grpcaio.InferenceServerClient(server.grpc_host) as client:
        blocker = asyncio.ensure_future(grpc_call(client, rows(0, 0, spin=spin_rows(spin_seconds))))
        await running(server)
        calls = []
        for g, r in zip(grpc_inputs, rest_inputs, strict=True):  # interleaved, all waiting behind the blocker
            calls += [asyncio.ensure_future(grpc_call(client, g)),
                      asyncio.ensure_future(call(server.port, "tally", r, True))]
        held = await all_waiting(server, 1 + 2 * count, blocker)
        answers = await asyncio.wait_for(asyncio.gather(*calls), 120)
        alone = await blocker
    return (list(zip(grpc_inputs, answers[0::2], strict=True)), list(zip(rest_inputs, answers[1::2], strict=True)),
            alone, held)


def test_rest_and_grpc_requests_share_batches_and_get_their_own_rows(server: ServerProcess) -> None:
    # The blocker must outlast the sending of 40 calls, which a busy machine can slow by any factor:
    # the server's in-flight count says whether it did, and a longer blocker is tried if not.
    for spin_seconds in (3.0, 12.0, 48.0):
        grpc_pairs, rest_pairs, alone, held = asyncio.run(mixed(server, 20, spin_seconds))
        if held:
            break
    else:
        pytest.fail("the 40 calls never all arrived while a blocker of up to 48 s ran")
    assert float(alone["t"][0]) == 0  # the blocker ran by itself
    batches = []
    for x, got in grpc_pairs:
        np.testing.assert_array_equal(got["y"], x * 2)
        batches.append(float(got["t"][0]))
    for x, (status, got) in rest_pairs:
        assert status == 200, got
        np.testing.assert_array_equal(got["y"], x * 2)
        batches.append(float(got["t"][0]))
    # t = gRPC rows + 1000 * REST rows of the batch; a mixed batch has both parts.
    assert set(batches) == {20 * GRPC_TAG + 20 * REST_TAG}, sorted(set(batches))  # all 40 in one batch
