"""The binary tensor data extension without a server: header length, binary sections, BYTES
prefixes, raw binary requests, binary output selection, and the zero-copy output path.

The zero-copy tests run a real OpenVINO model in-process (the zoo's `dynamic`, y = 2x) through
App + HttpProtocol with a fake transport, so they can look at the exact buffers handed to
`writelines` and at the infer-request pool while the "socket" has not drained.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import openvino as ov
import pytest

from fastserve.errors import FastServeError
from fastserve.handlers import App
from fastserve.http.protocol import HttpProtocol
from fastserve.http.state import ServerState
from fastserve.models.servable import Servable
from fastserve.settings import ServerSettings
from fastserve.v2.datatypes import BY_NAME
from fastserve.v2.decode import decode_request, parse_header_length, split_bytes_elements
from fastserve.v2.encode import encode_response, select_outputs
from fastserve.v2.types import TensorSpec
from fastserve.v2.validate import bind_inputs
from tests.modelzoo import DATATYPES, dynamic_model
from tests.rawhttp import build


def framed(inputs: list[dict[str, Any]], binary: bytes = b"", **fields: Any) -> tuple[bytearray, int]:
    head = json.dumps({"inputs": inputs, **fields}).encode()
    return bytearray(head + binary), len(head)


def fails(status: int, words: str, call: Any, *args: Any) -> FastServeError:
    with pytest.raises(FastServeError) as info:
        call(*args)
    assert info.value.status == status
    assert words in info.value.message, info.value.message
    return info.value


def sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = BY_NAME[datatype].numpy
    if datatype == "BOOL":
        return (np.arange(np.prod(shape)) % 3 == 0).reshape(shape)
    if datatype.startswith("FP"):
        return (np.arange(np.prod(shape)) * -1.25).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)  # the extremes of the type, exactly
    values = [info.min, info.min + 1, info.min // 2, info.max // 2, info.max - 1, info.max]
    return np.array(values[: int(np.prod(shape))], dtype=dtype).reshape(shape)


# Inference-Header-Content-Length


@pytest.mark.parametrize(("value", "expected"), [(None, None), (b"0", 0), (b"12", 12), (b" 7 ", 7), (b"20", 20)])
def test_header_length_accepted(value: bytes | None, expected: int | None) -> None:
    assert parse_header_length(value, 20) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"abc", "invalid and couldn't be parsed - 'abc' is not a non-negative integer"),
        (b"1.5", "invalid and couldn't be parsed"),
        (b"", "invalid and couldn't be parsed"),
        (b"-3", "must not be negative (-3)"),
        (b"21", "exceeds actual payload length (21 > 20 bytes)"),
        (b"9" * 5000, "exceeds actual payload length"),  # beyond int()'s 4300-digit limit: still a 400
    ],
)
def test_header_length_refused(value: bytes, words: str) -> None:
    fails(400, words, parse_header_length, value, 20)


# Binary inputs


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_is_viewed_in_place(datatype: str) -> None:
    array = sample(datatype, (2, 3))
    body, length = framed([{"name": "x", "datatype": datatype, "shape": [2, 3],
                            "parameters": {"binary_data_size": array.nbytes}}], array.tobytes())
    request = decode_request(body, length)
    got = request.inputs[0].data
    assert got is not None and got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)
    assert np.shares_memory(got, np.frombuffer(body, dtype=np.uint8))  # a view of the body, no copy
    assert got.flags.writeable  # so OpenVINO may wrap it (shared_memory) without copying


def test_binary_data_size_is_optional_for_fixed_size_types() -> None:
    a, b = np.arange(4, dtype=np.float16), np.array([True, False])
    body, length = framed([{"name": "a", "datatype": "FP16", "shape": [4]},
                           {"name": "b", "datatype": "BOOL", "shape": [2]}], a.tobytes() + b.tobytes())
    request = decode_request(body, length)
    np.testing.assert_array_equal(request.inputs[0].data, a)
    np.testing.assert_array_equal(request.inputs[1].data, b)


def test_mixed_json_and_binary_inputs_take_sections_in_order() -> None:
    a, c = np.arange(3, dtype=np.int32), np.arange(2, dtype=np.uint64)
    body, length = framed([
        {"name": "a", "datatype": "INT32", "shape": [3], "parameters": {"binary_data_size": 12}},
        {"name": "b", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]},
        {"name": "c", "datatype": "UINT64", "shape": [2]},
    ], a.tobytes() + c.tobytes())
    request = decode_request(body, length)
    np.testing.assert_array_equal(request.inputs[0].data, a)
    np.testing.assert_array_equal(request.inputs[1].data, [1.5, 2.5])
    np.testing.assert_array_equal(request.inputs[2].data, c)


def prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_bytes_sections_split_by_prefixes() -> None:
    words = [b"hello", b"", "h\u00e9".encode(), b"\x00\xff"]
    first = prefixed(*words)
    body, length = framed([
        {"name": "s", "datatype": "BYTES", "shape": [4], "parameters": {"binary_data_size": len(first)}},
        {"name": "t", "datatype": "BYTES", "shape": [1]},  # the last one may leave its size out
    ], first + prefixed(b"tail"))
    request = decode_request(body, length)
    raw = request.inputs[0].raw
    assert raw is not None
    assert split_bytes_elements(raw, "s") == words
    assert split_bytes_elements(request.inputs[1].raw, "t") == [b"tail"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (struct.pack("<I", 6) + b"abc", "Batch length metadata exceeded buffer size in input s"),
        (struct.pack("<I", 0xFFFFFFFF) + b"abc", "Batch length metadata exceeded buffer size"),
        (prefixed(b"ok") + b"\x01\x00", "truncated length prefix in input s"),
    ],
)
def test_bytes_prefixes_never_run_past_the_section(raw: bytes, words: str) -> None:
    fails(400, words, split_bytes_elements, memoryview(raw), "s")


def test_bytes_prefix_cannot_reach_into_the_next_section() -> None:
    # s declares 7 bytes whose prefix says 10: the next input's bytes must not be read as s's.
    section = struct.pack("<I", 10) + b"abc"
    body, length = framed([
        {"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(section)}},
        {"name": "t", "datatype": "BYTES", "shape": [1]},
    ], section + prefixed(b"0123456789"))
    request = decode_request(body, length)
    fails(400, "exceeded buffer size in input s", split_bytes_elements, request.inputs[0].raw, "s")


@pytest.mark.parametrize(
    ("inputs", "binary", "words"),
    [
        ([{"name": "x", "datatype": "FP32", "shape": [2]}], b"\x00" * 4,
         "Received buffer size is smaller than binary_data_size parameter indicates for input x "
         "(8 bytes needed, 4 left)"),
        ([{"name": "x", "datatype": "FP32", "shape": [2]}], b"\x00" * 12,
         "Unexpected additional binary data: 4 bytes after the last input"),
        ([{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 6}}], b"\x00" * 8,
         "Invalid content size of tensor proto - Expected: 8 bytes; Actual: 6 bytes; input name: x"),
        ([{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": -8}}], b"\x00" * 8,
         "binary_data_size parameter is invalid and cannot be parsed for input x"),
        ([{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": "8"}}], b"\x00" * 8,
         "binary_data_size parameter is invalid"),
        ([{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2], "parameters": {"binary_data_size": 8}}],
         b"\x00" * 8, "Request contains values both in binary data and in content value for input x"),
        ([{"name": "s", "datatype": "BYTES", "shape": [1]}, {"name": "x", "datatype": "FP32", "shape": [1]}],
         prefixed(b"a") + b"\x00" * 4, "binary_data_size is required for BYTES input s"),
        ([{"name": "x", "datatype": "FP32", "shape": [2**31, 2**31, 2**31]}], b"",
         "shape [2147483648, 2147483648, 2147483648] of input x is too large"),
    ],
)
def test_framing_errors(inputs: list[dict[str, Any]], binary: bytes, words: str) -> None:
    body, length = framed(inputs, binary)
    fails(400, words, decode_request, body, length)


def test_json_header_cut_short_is_invalid_json() -> None:
    body, length = framed([{"name": "x", "datatype": "FP32", "shape": [1]}], b"\x00" * 4)
    fails(400, "not valid JSON", decode_request, body, length - 3)


# Raw binary request (Inference-Header-Content-Length: 0)


def spec(name: str, datatype: str, dims: list[int | tuple[int, int]]) -> TensorSpec:
    parsed = tuple(d if isinstance(d, tuple) else ((0, -1) if d == -1 else (d, d)) for d in dims)
    return TensorSpec(name, BY_NAME[datatype], datatype.lower(), parsed)


def raw_bind(body: bytes, model: dict[str, TensorSpec]) -> np.ndarray:
    request = decode_request(bytearray(body), 0)
    (array,) = bind_inputs(request, model)
    return array


def test_raw_binary_static_and_deduced_shapes() -> None:
    data = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(raw_bind(data.tobytes(), {"a": spec("a", "FP32", [1, 10])}), data.reshape(1, 10))
    got = raw_bind(data.tobytes(), {"x": spec("x", "FP32", [-1, 5])})
    assert got.shape == (2, 5) and got.flags.writeable
    strings = raw_bind(b"whole body", {"t": spec("t", "BYTES", [-1])})
    assert strings.shape == (1,) and strings[0] == b"whole body"


@pytest.mark.parametrize(
    ("model", "size", "words"),
    [
        ({"a": spec("a", "FP32", [1, 10]), "b": spec("b", "FP32", [1, 10])}, 40, "needs a model with one input"),
        ({"a": spec("a", "FP32", [1, 10])}, 36, "Expected: 40 bytes; Actual: 36 bytes; input name: a"),
        ({"a": spec("a", "FP32", [-1, 10])}, 36, "9 elements do not fill shape (-1,10)"),
        ({"a": spec("a", "FP32", [-1, 10])}, 6, "not a whole number of 4-byte FP32 elements"),
        ({"a": spec("a", "FP32", [-1, -1])}, 40, "can deduce one dynamic dimension"),
        ({"a": spec("a", "FP32", [(1, 4), 3])}, 60, "Invalid input batch size"),
    ],
)
def test_raw_binary_refused(model: dict[str, TensorSpec], size: int, words: str) -> None:
    fails(400, words, raw_bind, b"\x00" * size, model)


# Binary outputs


def out_specs() -> dict[str, TensorSpec]:
    return {"a": spec("a", "FP32", [2]), "b": spec("b", "FP16", [2]), "s": spec("s", "BYTES", [-1])}


@pytest.mark.parametrize(
    ("request_level", "outputs", "expected"),
    [
        (None, None, {"a": False, "b": False, "s": False}),
        (True, None, {"a": True, "b": True, "s": True}),
        (True, [{"name": "a", "parameters": {"binary_data": False}}, {"name": "s"}], {"a": False, "s": True}),
        (False, [{"name": "b", "parameters": {"binary_data": True}}], {"b": True}),
        (None, [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}], {"a": True, "b": False}),
    ],
)
def test_binary_output_selection(request_level: bool | None, outputs: Any, expected: dict[str, bool]) -> None:
    fields: dict[str, Any] = {}
    if request_level is not None:
        fields["parameters"] = {"binary_data_output": request_level}
    if outputs is not None:
        fields["outputs"] = outputs
    body, length = framed([{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], **fields)
    chosen = select_outputs(decode_request(body, length), out_specs())
    assert {s.name: binary for s, binary in chosen} == expected


def test_encoded_binary_outputs_are_views_with_sizes_and_no_data() -> None:
    body, length = framed([{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                          parameters={"binary_data_output": True})
    request = decode_request(body, length)
    specs = out_specs()
    a = np.array([1.5, -2.0], dtype=np.float32)
    b = np.array([0.5, 65504], dtype=np.float16)
    s = np.array([b"xy", b""], dtype=object)
    encoded = encode_response("m", "1", request, [(specs["a"], True, a), (specs["b"], True, b), (specs["s"], False, s)])
    assert encoded.header_length == len(encoded.head)
    doc = json.loads(encoded.head)
    assert doc["outputs"][0] == {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    assert doc["outputs"][1]["parameters"] == {"binary_data_size": 4} and "data" not in doc["outputs"][1]
    assert doc["outputs"][2]["data"] == ["xy", ""]
    first, second = encoded.parts
    assert isinstance(first, memoryview) and np.shares_memory(np.frombuffer(first, np.uint8), a)
    assert np.shares_memory(np.frombuffer(second, np.uint8), b)
    assert bytes(second) == b.tobytes()


def test_bytes_outputs_are_length_prefixed() -> None:
    body, length = framed([{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}])
    strings = np.array([b"ab", b"", b"\xc3\xa9"], dtype=object)
    encoded = encode_response("m", "1", decode_request(body, length), [(out_specs()["s"], True, strings)])
    assert bytes(encoded.parts[0]) == prefixed(b"ab", b"", b"\xc3\xa9")


# Zero copy through the protocol, with a real OpenVINO model


class FakeRepository:
    ready = True

    def __init__(self, servable: Servable) -> None:
        self.servable = servable

    def get(self, name: str, version: int | None) -> Servable:
        return self.servable


class SlowTransport:
    """Takes buffers and keeps them, as a socket whose peer is not reading; says so with pause_writing."""

    def __init__(self) -> None:
        self.protocol: HttpProtocol | None = None
        self.written: list[Any] = []
        self.drained = False

    def writelines(self, buffers: list[Any]) -> None:
        self.written.extend(buffers)
        if not self.drained:
            assert self.protocol is not None
            self.protocol.pause_writing()  # what uvloop does when bytes stay buffered over high-water 0

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high == 0

    def get_write_buffer_size(self) -> int:
        return 0 if self.drained else sum(len(memoryview(b).cast("B")) for b in self.written)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def servable() -> Iterator[Servable]:
    compiled = ov.Core().compile_model(dynamic_model(), "CPU")
    yield Servable("dynamic", 1, compiled, 2, "inline")


@pytest.fixture()
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def infer_bytes(x: np.ndarray) -> bytes:
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape)}],
                       "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    return build("POST", "/v2/models/dynamic/infer", head + x.tobytes(),
                 {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"})


def connect(servable: Servable, loop: asyncio.AbstractEventLoop) -> tuple[HttpProtocol, SlowTransport]:
    settings = ServerSettings()
    protocol = HttpProtocol(App(settings, FakeRepository(servable)), ServerState(settings, loop))  # type: ignore[arg-type]
    transport = SlowTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def test_output_buffer_is_the_openvino_tensor_and_held_until_drained(
    servable: Servable, loop: asyncio.AbstractEventLoop
) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    every_slot = list(servable.pool.idle)
    assert len(every_slot) == 2
    protocol, transport = connect(servable, loop)
    protocol.data_received(infer_bytes(x))
    # The response went to the transport: head, JSON, then the tensor as a memoryview.
    tensor_part = transport.written[-1]
    assert isinstance(tensor_part, memoryview) and tensor_part.nbytes == x.nbytes
    assert servable.pool.busy == 1  # the infer request is still held: the transport has not drained
    busy = [slot for slot in every_slot if slot not in servable.pool.idle]
    assert len(busy) == 1
    output = busy[0].request.get_output_tensor(0).data
    assert np.shares_memory(np.frombuffer(tensor_part, dtype=np.float32), output)  # zero copy
    np.testing.assert_array_equal(np.frombuffer(tensor_part, dtype=np.float32).reshape(3, 4), 2 * x)
    # The socket drains: only now does the infer request go back to the pool.
    transport.drained = True
    protocol.resume_writing()
    assert servable.pool.busy == 0
    protocol.connection_lost(None)


def test_held_request_is_not_reused_by_the_next_inference(
    servable: Servable, loop: asyncio.AbstractEventLoop
) -> None:
    first_x = np.full((2, 2), 1.0, dtype=np.float32)
    slow, slow_transport = connect(servable, loop)
    slow.data_received(infer_bytes(first_x))
    held = slow_transport.written[-1]
    # Other connections keep inferring (and draining) on the one free infer request.
    for value in (5.0, 7.0, 9.0):
        fast, fast_transport = connect(servable, loop)
        fast_transport.drained = True
        fast.data_received(infer_bytes(np.full((2, 2), value, dtype=np.float32)))
        assert bytes(fast_transport.written[-1]) == np.full((2, 2), 2 * value, dtype=np.float32).tobytes()
        fast.connection_lost(None)
        assert servable.pool.busy == 1
    # The bytes still waiting on the slow connection were never overwritten.
    assert bytes(held) == (2 * first_x).tobytes()
    slow_transport.drained = True
    slow.resume_writing()
    assert servable.pool.busy == 0
    slow.connection_lost(None)


def test_closed_connection_releases_the_request(servable: Servable, loop: asyncio.AbstractEventLoop) -> None:
    protocol, _ = connect(servable, loop)
    protocol.data_received(infer_bytes(np.ones((1, 3), dtype=np.float32)))
    assert servable.pool.busy == 1
    protocol.connection_lost(ConnectionResetError())
    assert servable.pool.busy == 0
