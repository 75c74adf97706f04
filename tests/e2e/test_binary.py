"""The binary tensor data extension end to end, on the real server and the zoo.

tritonclient.http sends and reads binary tensors of every datatype, strings and mixed
JSON/binary requests; raw sockets check the exact framing (headers, binary_data_size, raw
binary requests) and that every framing error is a 400 with a precise message after which
the same connection, and the server, keep working.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.modelzoo import DATATYPES
from tests.rawhttp import Conn, Reply
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.host)


def values(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = np.dtype(httpclient.triton_to_np_dtype(datatype))
    count = int(np.prod(shape))
    if datatype == "BOOL":
        return (np.arange(count) % 3 == 1).reshape(shape)
    if dtype.kind == "f":
        data = np.linspace(-1000.5, 1000.25, count).astype(dtype)
        data[0] = np.finfo(dtype).max
        return data.reshape(shape)
    info = np.iinfo(dtype)
    if datatype == "INT64":  # the CPU plugin keeps INT64 exact only within int32 (tests/modelzoo.py)
        info = np.iinfo(np.int32)
    edges = [info.min, info.max, 0, 1, info.max // 3]
    data = np.resize(np.array(edges, dtype=dtype), count)
    return data.reshape(shape)


# tritonclient


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_binary_both_ways(client: httpclient.InferenceServerClient, datatype: str) -> None:
    x = values(datatype, (3, 5))
    given = httpclient.InferInput("in", list(x.shape), datatype)
    given.set_data_from_numpy(x, binary_data=True)
    wanted = httpclient.InferRequestedOutput("out", binary_data=True)
    result = client.infer(f"identity_{datatype.lower()}", [given], outputs=[wanted])
    out = result.as_numpy("out")
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x)
    assert result.get_output("out")["parameters"]["binary_data_size"] == x.nbytes


def test_fp16_round_trip_is_bit_exact(client: httpclient.InferenceServerClient) -> None:
    # FP16 has no JSON form in the protocol: binary in, binary out, extremes and subnormals included.
    x = np.array([[0.5, -2.0, 65504.0, 6.1e-5]], dtype=np.float16)
    given = httpclient.InferInput("in", [1, 4], "FP16")
    given.set_data_from_numpy(x, binary_data=True)
    result = client.infer("identity_fp16", [given], outputs=[httpclient.InferRequestedOutput("out", binary_data=True)])
    assert result.as_numpy("out").tobytes() == x.tobytes()


def test_strings_binary_batch(client: httpclient.InferenceServerClient) -> None:
    words = [b"hello", b"", "h\u00e9llo w\u00f6rld".encode(), b"\x00\x01\xff", b"x" * 1000] * 20
    given = httpclient.InferInput("text", [len(words)], "BYTES")
    given.set_data_from_numpy(np.array(words, dtype=object), binary_data=True)
    outputs = [httpclient.InferRequestedOutput("echo", binary_data=True),
               httpclient.InferRequestedOutput("length", binary_data=False)]
    result = client.infer("string", [given], outputs=outputs)
    assert result.as_numpy("length").tolist() == [len(w) for w in words]
    echo = result.as_numpy("echo").tolist()
    # OpenVINO string tensors drop trailing NULs (tests/modelzoo.py); nothing else changes.
    assert echo == [w.rstrip(b"\x00") for w in words]


def test_mixed_json_and_binary_inputs(client: httpclient.InferenceServerClient) -> None:
    a = np.arange(10, dtype=np.float32).reshape(1, 10)
    b = np.full((1, 10), 0.5, dtype=np.float32)
    first = httpclient.InferInput("a", [1, 10], "FP32")
    first.set_data_from_numpy(a, binary_data=True)
    second = httpclient.InferInput("b", [1, 10], "FP32")
    second.set_data_from_numpy(b, binary_data=False)
    outputs = [httpclient.InferRequestedOutput("sum", binary_data=True),
               httpclient.InferRequestedOutput("diff", binary_data=False)]
    result = client.infer("add", [first, second], outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    assert "data" in result.get_output("diff") and "data" not in result.get_output("sum")


def test_tritonclient_sees_a_400_for_a_bad_batch(client: httpclient.InferenceServerClient) -> None:
    given = httpclient.InferInput("x", [5, 3], "FP32")
    given.set_data_from_numpy(np.zeros((5, 3), dtype=np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match="Invalid input batch size"):
        client.infer("ranged", [given])


# Raw framing


def framed(doc: dict[str, Any], binary: bytes = b"", content_type: str | None = "application/octet-stream",
           header_length: str | None = None) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(doc).encode()
    headers = {"Inference-Header-Content-Length": header_length if header_length is not None else str(len(head))}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return head + binary, headers


def split(reply: Reply) -> tuple[dict[str, Any], bytes]:
    length = int(reply.headers["inference-header-content-length"])
    return json.loads(reply.body[:length]), reply.body[length:]


A = np.arange(10, dtype=np.float32).reshape(1, 10)
B = np.full((1, 10), 2.0, dtype=np.float32)
ADD_INPUTS = [{"name": "a", "datatype": "FP32", "shape": [1, 10]}, {"name": "b", "datatype": "FP32", "shape": [1, 10]}]


@pytest.mark.parametrize("content_type", ["application/octet-stream", None, "application/json"])
def test_binary_request_with_any_content_type(server: ServerProcess, content_type: str | None) -> None:
    body, headers = framed({"inputs": ADD_INPUTS}, A.tobytes() + B.tobytes(), content_type)
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", body, headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")  # no binary output asked for
    assert "inference-header-content-length" not in reply.headers
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["sum"]["data"] == (A + B).ravel().tolist()


def test_request_level_binary_output_with_per_output_override(server: ServerProcess) -> None:
    doc = {"inputs": ADD_INPUTS, "parameters": {"binary_data_output": True},
           "outputs": [{"name": "sum"}, {"name": "diff", "parameters": {"binary_data": False}}]}
    body, headers = framed(doc, A.tobytes() + B.tobytes())
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", body, headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/octet-stream"
    header, binary = split(reply)
    outputs = {o["name"]: o for o in header["outputs"]}
    assert outputs["sum"]["parameters"] == {"binary_data_size": 40} and "data" not in outputs["sum"]
    assert outputs["diff"]["data"] == (A - B).ravel().tolist()
    assert binary == (A + B).tobytes()
    assert int(reply.headers["content-length"]) == len(reply.body)


def test_all_outputs_binary_in_request_order(server: ServerProcess) -> None:
    doc = {"inputs": ADD_INPUTS, "parameters": {"binary_data_output": True}}
    body, headers = framed(doc, A.tobytes() + B.tobytes())
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", body, headers)
    header, binary = split(reply)
    names = [o["name"] for o in header["outputs"]]
    assert names == ["diff", "sum"]  # all outputs, sorted by name, binary parts in the same order
    assert binary == (A - B).tobytes() + (A + B).tobytes()


def test_one_output_binary_by_its_own_flag(server: ServerProcess) -> None:
    doc = {"inputs": ADD_INPUTS, "outputs": [{"name": "diff", "parameters": {"binary_data": True}}]}
    body, headers = framed(doc, A.tobytes() + B.tobytes())
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", body, headers)
    header, binary = split(reply)
    assert [o["name"] for o in header["outputs"]] == ["diff"]
    assert binary == (A - B).tobytes()


def test_bytes_output_binary_is_length_prefixed(server: ServerProcess) -> None:
    strings = [b"ab", b"", b"cde"]
    raw = b"".join(struct.pack("<I", len(s)) + s for s in strings)
    doc = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3]}],
           "outputs": [{"name": "echo", "parameters": {"binary_data": True}}]}
    body, headers = framed(doc, raw)
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/string/infer", body, headers)
    header, binary = split(reply)
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(raw)
    assert binary == raw


# Raw binary request (Inference-Header-Content-Length: 0)


def raw_request(server: ServerProcess, model: str, body: bytes) -> Reply:
    headers = {"Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"}
    with Conn(server.port) as conn:
        return conn.request("POST", f"/v2/models/{model}/infer", body, headers)


def test_raw_binary_request_deduces_the_batch(server: ServerProcess) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    reply = raw_request(server, "versioned", x.tobytes())  # x: [-1, 4], y = x + 3 (latest version)
    assert reply.status == 200, reply.body
    out = reply.json()["outputs"][0]
    assert out["shape"] == [3, 4]
    assert out["data"] == (x + 3).ravel().tolist()


def test_raw_binary_request_for_a_string_input(server: ServerProcess) -> None:
    reply = raw_request(server, "string", "the whole body \u00e9".encode())
    assert reply.status == 200, reply.body
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["length"]["data"] == [len("the whole body \u00e9".encode())]


@pytest.mark.parametrize(
    ("model", "size", "words"),
    [
        ("add", 80, "needs a model with one input; this one has 2"),
        ("dynamic", 80, "can deduce one dynamic dimension from the body size; input x is (-1,-1)"),
        ("ranged", 60, "Invalid input batch size - Expected: ([1~4],3); Actual: (5,3); input name: x"),
        ("versioned", 18, "not a whole number of 4-byte FP32 elements"),
    ],
)
def test_raw_binary_request_refused(server: ServerProcess, model: str, size: int, words: str) -> None:
    reply = raw_request(server, model, b"\x00" * size)
    assert reply.status == 400
    assert words in reply.json()["error"]


# Every framing error: a 400 with a precise message, and the connection and server live on


def string_doc() -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2]}]}


FRAMING_ERRORS: list[tuple[str, str, bytes, dict[str, str], str]] = []


def case(label: str, model: str, body: bytes, headers: dict[str, str], words: str) -> None:
    FRAMING_ERRORS.append((label, model, body, headers, words))


_head = json.dumps({"inputs": ADD_INPUTS}).encode()
_tensors = A.tobytes() + B.tobytes()
case("header length not an integer", "add", _head + _tensors, {"Inference-Header-Content-Length": "12abc"},
     "Inference-Header-Content-Length header is invalid and couldn't be parsed - '12abc' is not a non-negative integer")
case("header length negative", "add", _head + _tensors, {"Inference-Header-Content-Length": "-5"},
     "Inference-Header-Content-Length header must not be negative (-5)")
case("header length larger than the body", "add", _head + _tensors,
     {"Inference-Header-Content-Length": str(len(_head) + 81)},
     f"Inference-Header-Content-Length header exceeds actual payload length ({len(_head) + 81} > {len(_head) + 80} "
     "bytes)")
case("JSON header that does not parse", "add", _head + _tensors,
     {"Inference-Header-Content-Length": str(len(_head) - 2)}, "The request is not valid JSON")
case("binary section shorter than declared", "add", _head + _tensors[:-4],
     {"Inference-Header-Content-Length": str(len(_head))},
     "Received buffer size is smaller than binary_data_size parameter indicates for input b (40 bytes needed, "
     "36 left)")
case("binary section longer than declared", "add", _head + _tensors + b"\x00" * 8,
     {"Inference-Header-Content-Length": str(len(_head))},
     "Unexpected additional binary data: 8 bytes after the last input")
_sized = json.dumps({"inputs": [{**ADD_INPUTS[0], "parameters": {"binary_data_size": 36}}, ADD_INPUTS[1]]}).encode()
case("binary_data_size not shape x item size", "add", _sized + _tensors,
     {"Inference-Header-Content-Length": str(len(_sized))},
     "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: a")
_both = json.dumps({"inputs": [{**ADD_INPUTS[0], "parameters": {"binary_data_size": 40}, "data": [0] * 10},
                               ADD_INPUTS[1]]}).encode()
case("data and binary both given", "add", _both + _tensors, {"Inference-Header-Content-Length": str(len(_both))},
     "Request contains values both in binary data and in content value for input a")
_huge = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2**32, 2**32, 2**32]}]}).encode()
case("sizes whose product overflows", "dynamic", _huge + b"\x00" * 16,
     {"Inference-Header-Content-Length": str(len(_huge))},
     "shape [4294967296, 4294967296, 4294967296] of input x is too large")
_image = json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1]}]}).encode()
case("an image to a non-4-D input", "dynamic", _image + struct.pack("<I", 4) + b"\xff\xd8\xff\xe0",
     {"Inference-Header-Content-Length": str(len(_image))},
     "Invalid input precision - Expected: FP32; Actual: BYTES; input name: x (encoded JPEG/PNG images need a 4-D "
     "NHWC input; this one is 2-D: (-1,-1))")
_strings = json.dumps(string_doc()).encode()
case("a BYTES length prefix overrunning the buffer", "string",
     _strings + struct.pack("<I", 2) + b"ok" + struct.pack("<I", 1000) + b"short",
     {"Inference-Header-Content-Length": str(len(_strings))},
     "Invalid content size of tensor proto - Batch length metadata exceeded buffer size in input text")
case("a truncated BYTES length prefix", "string", _strings + struct.pack("<I", 2) + b"ok" + b"\x01\x00",
     {"Inference-Header-Content-Length": str(len(_strings))},
     "Invalid content size of tensor proto - truncated length prefix in input text")


@pytest.mark.parametrize(
    ("label", "model", "body", "headers", "words"), FRAMING_ERRORS, ids=[c[0] for c in FRAMING_ERRORS]
)
def test_framing_error_is_a_precise_400(
    server: ServerProcess, label: str, model: str, body: bytes, headers: dict[str, str], words: str
) -> None:
    good, good_headers = framed({"inputs": ADD_INPUTS}, _tensors)
    with Conn(server.port) as conn:
        headers = {**headers, "Content-Type": "application/octet-stream"}
        reply = conn.request("POST", f"/v2/models/{model}/infer", body, headers)
        assert reply.status == 400, (label, reply.status, reply.body)
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json()["error"] == words or words in reply.json()["error"], reply.json()
        # The same keep-alive connection serves the next request.
        again = conn.request("POST", "/v2/models/add/infer", good, good_headers)
        assert again.status == 200, again.body
    with Conn(server.port) as conn:
        assert conn.request("GET", "/v2/health/live").status == 200
