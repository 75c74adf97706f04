"""Every way a JSON inference or a lookup can go wrong, against the real server on the zoo.

Each case asserts the status, the exact {"error": ...} body and its JSON content type, and
then asks /v2/health/live on the same connection: the server is still live and the
connection still usable after the error. docs/status-codes.md lists these rows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cpus import needs_two_cpus
from tests.rawhttp import Conn, Reply
from tests.serverproc import ServerProcess

INPUT = "Could not parse input content - "
COUNT = "Invalid number of values in tensor proto container - "
PARAMETERS = "Could not parse request parameters - "
OUTPUT = "Could not parse output content - "
SCALAR = "must be a string, number or boolean"


def check_error(reply: Reply, status: int, message: str | None) -> str:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    doc = json.loads(reply.body)
    assert list(doc) == ["error"] and isinstance(doc["error"], str)
    if message is not None:
        assert doc["error"] == message
    return doc["error"]


def call(server: ServerProcess, method: str, path: str, body: bytes, status: int, message: str | None) -> str:
    with Conn(server.port) as conn:
        text = check_error(conn.request(method, path, body), status, message)
        live = conn.request("GET", "/v2/health/live")
        assert live.status == 200, "the connection or the server did not survive the error"
    return text


def encoded(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def x(**fields: Any) -> dict[str, Any]:
    """An input of the dynamic model (x: FP32 [-1,-1]) with some fields changed; a field given as ... is left out."""
    item = {"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0], **fields}
    return {k: v for k, v in item.items() if v is not ...}


def add(a_shape: list[int] | None = None, **b: Any) -> dict[str, Any]:
    a_shape = a_shape or [1, 10]
    count = a_shape[0] * a_shape[-1] if a_shape else 1
    return {
        "inputs": [
            {"name": "a", "shape": a_shape, "datatype": "FP32", "data": [0.0] * count},
            {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10, **b},
        ]
    }


# (model, body, status, message): posted to /v2/models/<model>/infer
INFER_CASES: dict[str, tuple[str, Any, int, str]] = {
    # The body
    "empty body": (
        "dynamic",
        b"",
        400,
        "The request is not valid JSON - the body is empty (a JSON object is expected)",
    ),
    "body is a list": ("dynamic", b"[]", 400, "Request body should be JSON object"),
    "body is a string": ("dynamic", b'"inputs"', 400, "Request body should be JSON object"),
    "body is null": ("dynamic", b"null", 400, "Request body should be JSON object"),
    "no inputs": ("dynamic", {}, 400, "Invalid JSON structure, missing inputs - inputs must be a non-empty list"),
    "inputs empty": (
        "dynamic",
        {"inputs": []},
        400,
        "Invalid JSON structure, missing inputs - inputs must be a non-empty list",
    ),
    "input not an object": ("dynamic", {"inputs": ["x"]}, 400, INPUT + "inputs[0] must be an object"),
    # Fields of an input
    "name missing": ("dynamic", {"inputs": [x(name=...)]}, 400, INPUT + "inputs[0].name must be a non-empty string"),
    "name not a string": ("dynamic", {"inputs": [x(name=7)]}, 400, INPUT + "inputs[0].name must be a non-empty string"),
    "shape missing": (
        "dynamic",
        {"inputs": [x(shape=...)]},
        400,
        INPUT + "shape of input x must be a list of integers >= 0",
    ),
    "negative dim": (
        "dynamic",
        {"inputs": [x(shape=[-1, 1])]},
        400,
        INPUT + "shape of input x must be a list of integers >= 0",
    ),
    "float dim": (
        "dynamic",
        {"inputs": [x(shape=[1.0, 1])]},
        400,
        INPUT + "shape of input x must be a list of integers >= 0",
    ),
    "datatype missing": ("dynamic", {"inputs": [x(datatype=...)]}, 400, INPUT + "datatype of input x must be a string"),
    "unknown datatype": (
        "dynamic",
        {"inputs": [x(datatype="FLOAT")]},
        400,
        "Unsupported data precision detected - 'FLOAT' for input x",
    ),
    "data missing": ("dynamic", {"inputs": [x(data=...)]}, 400, INPUT + "input x has no data"),
    "data not a list": ("dynamic", {"inputs": [x(data=1.0)]}, 400, INPUT + "data of input x must be an array"),
    "data null": ("dynamic", {"inputs": [x(data=None)]}, 400, INPUT + "data of input x must be an array"),
    # Request fields
    "id not a string": ("dynamic", {"id": 5, "inputs": [x()]}, 400, "Request id must be a string"),
    "id null": ("dynamic", {"id": None, "inputs": [x()]}, 400, "Request id must be a string"),
    "parameters null": (
        "dynamic",
        {"parameters": None, "inputs": [x()]},
        400,
        PARAMETERS + "parameters must be an object",
    ),
    "parameter value null": (
        "dynamic",
        {"parameters": {"p": None}, "inputs": [x()]},
        400,
        PARAMETERS + f"'p' {SCALAR}",
    ),
    "parameter value object": (
        "dynamic",
        {"parameters": {"p": {}}, "inputs": [x()]},
        400,
        PARAMETERS + f"'p' {SCALAR}",
    ),
    "parameter value list": ("dynamic", {"parameters": {"p": [1]}, "inputs": [x()]}, 400, PARAMETERS + f"'p' {SCALAR}"),
    "input parameter value null": (
        "dynamic",
        {"inputs": [x(parameters={"p": None})]},
        400,
        f"Could not parse input x parameters - 'p' {SCALAR}",
    ),
    "outputs not a list": (
        "dynamic",
        {"inputs": [x()], "outputs": {"name": "y"}},
        400,
        OUTPUT + "outputs must be a list",
    ),
    "output without name": (
        "dynamic",
        {"inputs": [x()], "outputs": [{}]},
        400,
        OUTPUT + "outputs[0] must be an object with a name",
    ),
    "duplicate outputs": (
        "dynamic",
        {"inputs": [x()], "outputs": [{"name": "y"}, {"name": "y"}]},
        400,
        "Duplicate output name: y",
    ),
    "unknown output": (
        "dynamic",
        {"inputs": [x()], "outputs": [{"name": "z"}]},
        400,
        "Unknown output name: z (the model's outputs are: y)",
    ),
    # Inputs against the model
    "duplicate inputs": ("dynamic", {"inputs": [x(), x()]}, 400, "Duplicate input name: x"),
    "missing input": (
        "add",
        {"inputs": add()["inputs"][:1]},
        400,
        "Missing input with specific name - Required input: b",
    ),
    "extra input": (
        "dynamic",
        {"inputs": [x(), {**x(), "name": "z"}]},
        400,
        "Invalid number of inputs - Expected: 1; Actual: 2; unexpected input: z (the model's inputs are: x)",
    ),
    "wrong datatype": (
        "dynamic",
        {"inputs": [x(data=[1], datatype="INT32")]},
        400,
        "Invalid input precision - Expected: FP32; Actual: INT32; input name: x",
    ),
    "wrong rank": (
        "dynamic",
        {"inputs": [x(shape=[1])]},
        400,
        "Invalid number of shape dimensions - Expected: (-1,-1); Actual: (1); input name: x",
    ),
    "wrong static dim": (
        "add",
        add([1, 11]),
        400,
        "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: a",
    ),
    "wrong batch": (
        "add",
        add([2, 10]),
        400,
        "Invalid input batch size - Expected: (1,10); Actual: (2,10); input name: a",
    ),
    "below range": (
        "ranged",
        {"inputs": [x(data=[], shape=[0, 3])]},
        400,
        "Invalid input batch size - Expected: ([1~4],3); Actual: (0,3); input name: x",
    ),
    "above range": (
        "ranged",
        {"inputs": [x(data=[0] * 15, shape=[5, 3])]},
        400,
        "Invalid input batch size - Expected: ([1~4],3); Actual: (5,3); input name: x",
    ),
    "ranged static dim": (
        "ranged",
        {"inputs": [x(data=[0] * 4, shape=[1, 4])]},
        400,
        "Invalid input shape - Expected: ([1~4],3); Actual: (1,4); input name: x",
    ),
    "too few values": (
        "dynamic",
        {"inputs": [x(data=[1, 2, 3], shape=[2, 2])]},
        400,
        COUNT + "Expected: 4 values; Actual: 3 values; input name: x",
    ),
    "too many values": (
        "dynamic",
        {"inputs": [x(data=[[1, 2], [3, 4]], shape=[1, 2])]},
        400,
        COUNT + "Expected: 2 values; Actual: 4 values; input name: x",
    ),
    "ragged data of the wrong count": (
        "dynamic",
        {"inputs": [x(data=[[1, 2], [3]], shape=[2, 2])]},
        400,
        COUNT + "Expected: 4 values; Actual: 3 values; input name: x",
    ),
    "data holding objects": (
        "dynamic",
        {"inputs": [x(data=[[1, 2], [{"a": 1}]], shape=[1, 3])]},
        400,
        INPUT + "data of input x holds values that are not numbers",
    ),
    # Values against the datatype
    "int above range": (
        "identity_int8",
        {"inputs": [x(data=[1, 128], datatype="INT8", name="in")]},
        400,
        "Value out of range for INT8 in input in (allowed -128..127)",
    ),
    "uint below range": (
        "identity_uint32",
        {"inputs": [x(data=[-1], datatype="UINT32", name="in")]},
        400,
        "Value out of range for UINT32 in input in (allowed 0..4294967295)",
    ),
    "uint64 beyond 64 bits": (
        "identity_uint64",
        b'{"inputs":[{"name":"in","shape":[1,1],"datatype":"UINT64","data":[18446744073709551616]}]}',
        400,
        "Value out of range for UINT64 in input in (allowed 0..18446744073709551615)",
    ),
    "float for int": (
        "identity_int32",
        {"inputs": [x(data=[1, 1.5], datatype="INT32", name="in")]},
        400,
        INPUT + "data of input in holds values that are not integers",
    ),
    "string for number": (
        "identity_fp32",
        {"inputs": [x(data=["1"], datatype="FP32", name="in")]},
        400,
        INPUT + "data of input in holds values that are not numbers",
    ),
    "bool for number": (
        "identity_fp32",
        {"inputs": [x(data=[True], datatype="FP32", name="in")]},
        400,
        INPUT + "data of input in holds values that are not numbers",
    ),
    "number for bool": (
        "identity_bool",
        {"inputs": [x(data=[1], datatype="BOOL", name="in")]},
        400,
        INPUT + "data of input in holds values that are not booleans (true/false)",
    ),
    "null in data": (
        "identity_int64",
        {"inputs": [x(data=[1, None], datatype="INT64", name="in")]},
        400,
        INPUT + "data of input in holds values that are not integers",
    ),
    "fp16 overflow": (
        "identity_fp16",
        {"inputs": [x(data=[70000.0], datatype="FP16", name="in")]},
        400,
        "Value out of range for FP16 in input in (allowed -65504.0..65504.0)",
    ),
    "number for string": (
        "string",
        {"inputs": [x(data=["a", 1], shape=[2], datatype="BYTES", name="text")]},
        400,
        INPUT + "BYTES data of input text must be strings",
    ),
    "nesting deeper than 100": (
        "dynamic",
        b'{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":' + b"[" * 101 + b"1" + b"]" * 101 + b"}]}",
        400,
        "JSON nesting depth exceeds the allowed limit (100) in input x",
    ),
    # Lookup comes before the body is read: a bad body to an unknown model is a 404
    "unknown model": ("nope", {"inputs": [x()]}, 404, "Model with requested name is not found"),
    "unknown model, bad body": ("nope", b"{", 404, "Model with requested name is not found"),
}


@pytest.mark.parametrize("case", list(INFER_CASES))
def test_infer_error(server: ServerProcess, case: str) -> None:
    model, doc, status, message = INFER_CASES[case]
    call(server, "POST", f"/v2/models/{model}/infer", encoded(doc), status, message)


def test_malformed_json(server: ServerProcess) -> None:
    text = call(server, "POST", "/v2/models/dynamic/infer", b'{"inputs": [}', 400, None)
    assert text.startswith("The request is not valid JSON - ") and "char 12" in text


VERSION_NOT_FOUND = "Model with requested version is not found"
ENDPOINTS = {"metadata": ("GET", ""), "ready": ("GET", "/ready"), "infer": ("POST", "/infer")}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    ("model", "version", "status", "message"),
    [
        ("nope", None, 404, "Model with requested name is not found"),
        ("nope", "1", 404, "Model with requested name is not found"),
        ("versioned", "7", 404, VERSION_NOT_FOUND),
        ("versioned", "0", 404, VERSION_NOT_FOUND),  # 0 is not "the default version": not served
        ("add", "2", 404, VERSION_NOT_FOUND),
        ("versioned", "99999999999999999999999", 404, VERSION_NOT_FOUND),  # beyond int64
        ("versioned", "abc", 400, "Invalid request URL: model version 'abc' is not a number"),
        ("versioned", "-1", 400, "Invalid request URL: model version '-1' is not a number"),
    ],
)
def test_lookup_errors(
    server: ServerProcess, endpoint: str, model: str, version: str | None, status: int, message: str
) -> None:
    method, suffix = ENDPOINTS[endpoint]
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + suffix
    body = json.dumps({"inputs": [x(shape=[1, 4], data=[0] * 4)]}).encode() if method == "POST" else b""
    call(server, method, path, body, status, message)


def failing(x_values: list[float], shape: list[int]) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [len(x_values)], "datatype": "FP32", "data": x_values},
                {"name": "shape", "shape": [2], "datatype": "INT64", "data": shape},
            ]
        }
    ).encode()


@needs_two_cpus
def test_inference_failure_is_500_and_the_server_keeps_serving(server: ServerProcess) -> None:
    """failing reshapes x to `shape`; a shape that does not fit raises inside OpenVINO's infer().

    A valid request goes first each time: the CPU plugin remembers the last shape values even when
    the inference failed, and would skip shape inference for an identical repeat (OpenVINO 2026.4).
    """
    path = "/v2/models/failing/infer"
    with Conn(server.port) as conn:
        for bad_shape in ([3, 3], [5, 1], [3, 3]):
            good = conn.request("POST", path, failing([1, 2, 3, 4], [2, 2]))
            assert good.status == 200, good.body
            assert good.json()["outputs"][0]["shape"] == [2, 2]
            assert good.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
            text = check_error(conn.request("POST", path, failing([1, 2, 3, 4], bad_shape)), 500, None)
            assert text.startswith("Internal inference error")
        # The same compiled model and the rest of the server go on serving.
        after = conn.request("POST", path, failing([1, 2, 3, 4, 5, 6], [3, 2]))
        assert after.status == 200 and after.json()["outputs"][0]["shape"] == [3, 2]
        other = conn.request("POST", "/v2/models/dynamic/infer", json.dumps({"inputs": [x(data=[2.0])]}).encode())
        assert other.status == 200 and other.json()["outputs"][0]["data"] == [4.0]
        assert conn.request("GET", "/v2/health/live").status == 200
        assert conn.request("GET", "/v2/health/ready").status == 200
