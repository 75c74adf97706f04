"""Every call of KServe's Python SDK clients against a running fastserve, in a child process.

Run as `python -m tests.kserve_client <rest host:port> <grpc host:port>` (or `--health <rest host:port>`
for the health calls alone); prints one JSON object,
what each call returned (or the exception it raised), for tests/e2e/test_kserve_client.py to
check. A child process because kserve registers its own `inference.*` protobuf messages in
protobuf's default pool, as tritonclient does: both in the test process would collide.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

A = np.arange(10, dtype=np.float32).reshape(1, 10)
B = np.full((1, 10), 2.0, dtype=np.float32)


async def outcome(call: Awaitable[Any]) -> Any:
    try:
        return {"value": await call}
    except Exception as exc:  # noqa: BLE001 - the test wants to see what the client raised
        return {"error": type(exc).__name__, "message": str(exc)}


def add_request(binary: bool) -> InferRequest:
    inputs = []
    for name, array in (("a", A), ("b", B)):
        tensor = InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return InferRequest(model_name="add", infer_inputs=inputs, request_id="kserve-1")


def outputs(response: Any) -> dict[str, list[float]]:
    return {out.name: out.as_numpy().reshape(-1).tolist() for out in response.outputs}


async def rest(base: str) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    found: dict[str, Any] = {}
    try:
        found["is_server_live"] = await outcome(client.is_server_live(base))
        found["is_server_ready"] = await outcome(client.is_server_ready(base))
        found["is_model_ready"] = await outcome(client.is_model_ready(base, "add"))
        found["is_model_ready_unknown"] = await outcome(client.is_model_ready(base, "nope"))
        body = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": A.reshape(-1).tolist()},
                           {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": B.reshape(-1).tolist()}]}
        response = await client.infer(base, body, model_name="add")
        found["infer_dict"] = {"model_name": response.model_name, "outputs": outputs(response)}
        for binary in (False, True):
            response = await client.infer(base, add_request(binary), model_name="add")
            found[f"infer_request_binary_{binary}"] = {"id": response.id, "outputs": outputs(response)}
        found["infer_unknown_model"] = await outcome(client.infer(base, body, model_name="nope"))
        found["infer_bad_input"] = await outcome(client.infer(base, {"inputs": []}, model_name="add"))
        found["explain"] = await outcome(client.explain(base, "add", body))
    finally:
        await client.close()
    return found


async def grpc(target: str) -> dict[str, Any]:
    client = InferenceGRPCClient(target, timeout=30)
    found: dict[str, Any] = {}
    try:
        found["is_server_live"] = await outcome(client.is_server_live())
        found["is_server_ready"] = await outcome(client.is_server_ready())
        found["is_model_ready"] = await outcome(client.is_model_ready("add"))
        response = await client.infer(add_request(False))
        found["infer"] = {"id": response.id, "outputs": outputs(response)}
    finally:
        await client.close()
    return found


async def health(base: str) -> dict[str, Any]:
    """Only the REST health calls: for a server whose first load is still running."""
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        return {"is_server_live": await outcome(client.is_server_live(base)),
                "is_server_ready": await outcome(client.is_server_ready(base))}
    finally:
        await client.close()


async def main(rest_host: str, grpc_host: str) -> None:
    print(json.dumps({"rest": await rest(f"http://{rest_host}"), "grpc": await grpc(grpc_host)}))


if __name__ == "__main__":
    if sys.argv[1] == "--health":
        print(json.dumps(asyncio.run(health(f"http://{sys.argv[2]}"))))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
