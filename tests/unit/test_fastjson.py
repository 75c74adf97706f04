"""The REST fast path (fastserve/v2/fastjson.py): what it takes it decodes and binds exactly as the general
path (decode.py then validate.py) does; everything else it hands back to that path (None), errors included."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from fastserve.errors import FastServeError
from fastserve.v2.datatypes import BY_NAME
from fastserve.v2.decode import decode_request
from fastserve.v2.fastjson import FastJson
from fastserve.v2.types import TensorSpec
from fastserve.v2.validate import bind_inputs


def spec(name: str, datatype: str, dims: tuple[tuple[int, int], ...] | None, index: int) -> TensorSpec:
    return TensorSpec(name, BY_NAME[datatype], datatype.lower(), dims, index)


# Two inputs sorted by name but in the other model order: arrays must come back by index.
SPECS = {
    "a": spec("a", "FP32", ((1, 1), (4, 4)), 1),
    "b": spec("b", "INT64", ((1, 8), (2, 2)), 0),
}
FAST = FastJson.build(SPECS)


def body(inputs: list[dict[str, Any]], **fields: Any) -> bytes:
    return orjson.dumps({"inputs": inputs, **fields})


def a(data: Any = (1.0, 2.5, -3, 4), **changes: Any) -> dict[str, Any]:
    return {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": list(data), **changes}


def b(data: Any = (1, -(2**63), 2**63 - 1, 0), shape: Any = (2, 2), **changes: Any) -> dict[str, Any]:
    return {"name": "b", "shape": list(shape), "datatype": "INT64", "data": list(data), **changes}


def general(raw: bytes) -> tuple[Any, list[np.ndarray]]:
    decoded = decode_request(raw, None)
    return decoded, bind_inputs(decoded, SPECS)


@pytest.mark.parametrize(
    "raw",
    [
        body([a(), b()]),
        body([b(), a()]),
        body([a(), b()], id="req-7"),
        body([a(), b(data=(1, 2, 3, 4, 5, 6, 7, 8), shape=(4, 2))]),
        body([{"data": [0, 0, 0, 1], "datatype": "FP32", "shape": [1, 4], "name": "a"}, b()]),
    ],
)
def test_taken_requests_match_the_general_path(raw: bytes) -> None:
    assert FAST is not None
    prepared = FAST(raw)
    assert prepared is not None
    decoded, arrays = prepared
    expected_decoded, expected_arrays = general(raw)
    assert decoded.id == expected_decoded.id
    assert decoded.parameters == expected_decoded.parameters == {}
    assert decoded.outputs is expected_decoded.outputs is None
    assert decoded.binary_output is expected_decoded.binary_output is False
    assert [(i.name, i.datatype, i.shape, i.parameters) for i in decoded.inputs] == [
        (i.name, i.datatype, i.shape, i.parameters) for i in expected_decoded.inputs
    ]
    for got, want in zip(arrays, expected_arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[1]",
        b'{"inputs": [',
        body([a()]),  # one missing
        body([a(), b(), b()]),
        body([a(), a()]),  # a duplicate
        body([a(), b()], id=5),
        body([a(), b()], id="x", parameters={}),
        body([a(), b()], outputs=[{"name": "sum"}]),
        body([a(), b()], parameters={"binary_data_output": True}),
        body([a(parameters={}), b()]),
        body([a(name="c"), b()]),
        body([a(name=["a"]), b()]),
        body([a(name={"a": 1}), b()]),
        body([a(datatype="FP64"), b()]),
        body([a(datatype="BYTES"), b()]),
        body([a(shape=[1, 5]), b()]),
        body([a(shape=[1.0, 4]), b()]),
        body([a(shape=[True, 4]), b()]),
        body([a(shape=[4]), b()]),
        body([a(), b(shape=(9, 2), data=range(18))]),  # beyond the range 1..8
        body([a(), b(shape=(0, 2), data=())]),
        body([a(data=(1, 2, 3)), b()]),
        body([a(data=([1, 2], [3, 4])), b()]),
        body([a(data=(1, 2, "3", 4)), b()]),
        body([a(data=(1, 2, 3, 1e39)), b()]),
        body([a(), b(data=(1, 2, 3, 2.0))]),
        body([a(), b(data=(1, 2, 3, True))]),
        body([a(), b(data=(1, 2, 3, 2**63))]),
        body([a(data=(1, 2, 3, None)), b()]),
        body([[1], b()]),
    ],
)
def test_anything_else_goes_to_the_general_path(raw: bytes) -> None:
    assert FAST is not None
    assert FAST(raw) is None


def test_refusals_keep_the_general_path_messages() -> None:
    assert FAST is not None
    raw = body([a(data=(1, 2, 3)), b()])
    assert FAST(raw) is None
    with pytest.raises(FastServeError, match="Expected: 4 values; Actual: 3 values; input name: a"):
        general(raw)


def test_large_bodies_are_left_to_the_general_path() -> None:
    assert FAST is not None
    raw = body([a(), b()], id="x" * 70000)
    assert FAST(raw) is None
    assert general(raw)[0].id == "x" * 70000


@pytest.mark.parametrize(
    "specs",
    [
        {"s": spec("s", "BYTES", ((1, 1),), 0)},
        {"h": spec("h", "BF16", ((1, 1),), 0)},
        {"d": spec("d", "FP32", None, 0)},
        {"u": TensorSpec("u", None, "u4", ((1, 1),), 0)},
        {},
    ],
)
def test_models_it_cannot_serve_get_none(specs: dict[str, TensorSpec]) -> None:
    assert FastJson.build(specs) is None
