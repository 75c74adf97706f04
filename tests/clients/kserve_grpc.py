"""KServe's InferenceGRPCClient against a server, in its own process; prints one JSON line.

Run by tests/e2e/test_grpc_kserve.py as `python -m tests.clients.kserve_grpc HOST`. kserve's
generated messages register `inference.*` in protobuf's default pool, as tritonclient's do, so
the two cannot be imported in one process: this one imports kserve only.
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput


async def main(host: str) -> dict[str, object]:
    client = InferenceGRPCClient(host, timeout=30, retries=0)
    found: dict[str, object] = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "add_ready": await client.is_model_ready("add"),
    }
    try:
        await client.is_model_ready("no_such_model")
        found["unknown"] = "ready"
    except grpc.RpcError as exc:
        found["unknown"] = [exc.code().name, exc.details()]
    a = np.arange(10, dtype=np.float32).reshape(1, 10)
    b = np.full((1, 10), 0.5, np.float32)
    inputs = [InferInput("a", [1, 10], "FP32"), InferInput("b", [1, 10], "FP32")]
    inputs[0].set_data_from_numpy(a)  # both as raw_input_contents
    inputs[1].set_data_from_numpy(b)
    response = await client.infer(InferRequest("add", inputs, request_id="k-1",
                                               request_outputs=[RequestedOutput("sum")]))
    found["infer"] = {"id": response.id, "model": response.model_name, "version": response.model_version,
                      "outputs": {o.name: o.as_numpy().tolist() for o in response.outputs}}
    typed = InferInput("a", [1, 10], "FP32", data=a.ravel().tolist())
    other = InferInput("b", [1, 10], "FP32", data=b.ravel().tolist())
    response = await client.infer(InferRequest("add", [typed, other]))  # typed contents
    found["typed"] = {o.name: o.as_numpy().tolist() for o in response.outputs}
    mixed = InferInput("b", [1, 10], "FP32", data=b.ravel().tolist())
    try:  # one raw input and one typed: KServe's rule is that a request uses one or the other
        await client.infer(InferRequest("add", [inputs[0], mixed]))
        found["mixed"] = "accepted"
    except grpc.RpcError as exc:
        found["mixed"] = [exc.code().name, exc.details()]
    bad = InferInput("a", [1, 9], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 9), np.float32))
    try:
        await client.infer(InferRequest("add", [bad, inputs[1]]))
        found["bad"] = "accepted"
    except grpc.RpcError as exc:
        found["bad"] = [exc.code().name, exc.details()]
    await client.close()
    return found


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
