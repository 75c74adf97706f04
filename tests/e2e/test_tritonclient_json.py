"""Triton's Python HTTP client (tritonclient.http) against the real server, JSON tensors only.

binary_data=False on every input and output, so the client writes and reads `data` as JSON:
this is what a KServe v2 user with the stock client gets without the binary extension.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.rawhttp import Conn
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(server.host, connection_timeout=10, network_timeout=30)
    yield triton
    triton.close()


def json_input(name: str, array: np.ndarray, datatype: str) -> httpclient.InferInput:
    item = httpclient.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=False)
    return item


def json_output(name: str) -> httpclient.InferRequestedOutput:
    return httpclient.InferRequestedOutput(name, binary_data=False)


def test_health(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_server_metadata()
    assert metadata["name"] == "fastserve"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata(client: httpclient.InferenceServerClient) -> None:
    for version in ("", "2"):
        metadata = client.get_model_metadata("versioned", model_version=version)
        assert metadata["name"] == "versioned"
        assert metadata["versions"] == ["1", "2", "3"]
        assert metadata["platform"] == "OpenVINO"
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


def test_model_ready(client: httpclient.InferenceServerClient) -> None:
    assert client.is_model_ready("versioned")
    assert client.is_model_ready("versioned", "2")
    assert not client.is_model_ready("versioned", "7")
    assert not client.is_model_ready("nope")


def test_infer_add(client: httpclient.InferenceServerClient) -> None:
    a = np.arange(10, dtype=np.float32).reshape(1, 10)
    b = np.full((1, 10), 0.25, dtype=np.float32)
    result = client.infer(
        "add",
        [json_input("a", a, "FP32"), json_input("b", b, "FP32")],
        outputs=[json_output("sum"), json_output("diff")],
        request_id="tc-1",
    )
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    response = result.get_response()
    assert response["id"] == "tc-1"
    assert response["model_name"] == "add" and response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == ["sum", "diff"]


def test_infer_one_requested_output(client: httpclient.InferenceServerClient) -> None:
    a = np.ones((1, 10), dtype=np.float32)
    result = client.infer(
        "add", [json_input("a", a, "FP32"), json_input("b", a, "FP32")], outputs=[json_output("diff")]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["diff"]
    assert result.as_numpy("sum") is None


@pytest.mark.parametrize(("version", "added"), [("", 3), ("1", 1), ("2", 2)])
def test_infer_versions(client: httpclient.InferenceServerClient, version: str, added: int) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = client.infer("versioned", [json_input("x", x, "FP32")], model_version=version, outputs=[json_output("y")])
    np.testing.assert_array_equal(result.as_numpy("y"), x + added)
    assert result.get_response()["model_version"] == str(added)


def edge_values(datatype: str) -> np.ndarray:
    if datatype == "BOOL":
        return np.array([[True, False, True]])
    dtype = np.dtype(datatype.lower().replace("fp", "float"))
    if datatype == "INT64":
        return np.array([[-(2**31), 0, 2**31 - 1]], dtype=dtype)  # what the CPU plugin keeps
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 1, info.max]], dtype=dtype)
    info = np.finfo(dtype)
    return np.array([[info.min, 0.1, info.tiny]], dtype=dtype)


@pytest.mark.parametrize(
    "datatype",
    ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"],
)
def test_identity_every_datatype(client: httpclient.InferenceServerClient, datatype: str) -> None:
    values = edge_values(datatype)
    result = client.infer(
        f"identity_{datatype.lower()}", [json_input("in", values, datatype)], outputs=[json_output("out")]
    )
    got = result.as_numpy("out")
    assert got.dtype == values.dtype and got.shape == values.shape
    assert got.tobytes() == values.tobytes()


def test_strings(client: httpclient.InferenceServerClient) -> None:
    texts = np.array(["héllo".encode(), "日本".encode(), b"", b"abc"], dtype=np.object_)
    result = client.infer(
        "string", [json_input("text", texts, "BYTES")], outputs=[json_output("echo"), json_output("length")]
    )
    assert [v.encode() if isinstance(v, str) else v for v in result.as_numpy("echo").tolist()] == texts.tolist()
    assert result.as_numpy("length").tolist() == [6, 6, 0, 3]


def test_error_reaches_the_client(client: httpclient.InferenceServerClient) -> None:
    x = np.zeros((1, 11), dtype=np.float32)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("add", [json_input("a", x, "FP32"), json_input("b", x, "FP32")])
    assert caught.value.status() == "400"
    assert caught.value.message() == "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: a"
    assert client.is_server_live()


def test_unknown_model_reaches_the_client(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert caught.value.status() == "404"
    assert caught.value.message() == "Model with requested name is not found"


# JSON heads of 64 KiB and more are decoded by simdjson (fastserve/v2/bigjson.py)


@pytest.mark.parametrize(("datatype", "dtype"), [("FP32", np.float32), ("INT64", np.int64), ("UINT8", np.uint8),
                                                  ("FP64", np.float64), ("BOOL", np.bool_)])
def test_large_json_tensors_come_back_exact(
    client: httpclient.InferenceServerClient, datatype: str, dtype: type
) -> None:
    rng = np.random.default_rng(11)
    if dtype is np.bool_:
        values = rng.random((40, 500)) > 0.5
    elif np.issubdtype(dtype, np.integer):
        # The CPU plugin keeps only 32 bits of INT64 in ops (tests/modelzoo.py); the codec's full 64-bit
        # range on this path is covered in tests/unit/test_bigjson.py.
        info = np.iinfo(np.int32 if dtype is np.int64 else dtype)
        values = rng.integers(info.min, info.max, (40, 500), endpoint=True).astype(dtype)
    else:
        values = rng.standard_normal((40, 500)).astype(dtype)
    result = client.infer(
        f"identity_{datatype.lower()}", [json_input("in", values, datatype)], outputs=[json_output("out")]
    )
    got = result.as_numpy("out")
    assert got.dtype == values.dtype and got.shape == values.shape
    assert got.tobytes() == values.tobytes()


def test_large_json_errors_are_400_and_the_connection_lives(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "in", "datatype": "INT8", "shape": [1, 30000], "data": [1] * 29999 + [300]}]}
    cases = [
        (json.dumps(body).encode(), "Value out of range for INT8 in input in"),
        (json.dumps(body).encode()[:-3], "The request is not valid JSON - "),
        (json.dumps({**body, "inputs": [{**body["inputs"][0], "data": [1.5] * 30000}]}).encode(),
         "Could not parse input content - data of input in holds values that are not integers"),
    ]
    with Conn(server.port) as conn:
        for raw, message in cases:
            assert len(raw) >= 64 * 1024
            reply = conn.request("POST", "/v2/models/identity_int8/infer", raw, {"Content-Type": "application/json"})
            assert reply.status == 400 and reply.headers["content-type"] == "application/json"
            assert reply.json()["error"].startswith(message)
            assert conn.request("GET", "/v2/health/live").status == 200
