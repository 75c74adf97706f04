"""Large JSON bodies take simdjson (fastserve/v2/bigjson.py): same documents, same errors as orjson."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastserve.errors import FastServeError
from fastserve.v2 import bigjson
from fastserve.v2.decode import decode_request

PAD = "p" * bigjson.MIN_BYTES  # a request id this long puts any body on the large path


def body(inputs: list[dict[str, Any]], **fields: Any) -> bytes:
    return json.dumps({"id": PAD, "inputs": inputs, **fields}).encode()


def tensor(data: Any, datatype: str, shape: list[int], name: str = "x") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def error_of(raw: bytes) -> str:
    with pytest.raises(FastServeError) as caught:
        decode_request(bytearray(raw), None)
    assert caught.value.status == 400
    return caught.value.message


def small_error_of(raw: bytes) -> str:
    """The same request through orjson (the id made short), for comparing messages."""
    return error_of(raw.replace(PAD.encode(), b"short"))


def test_large_tensor_is_exact_and_goes_through_simdjson(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).standard_normal((1, 40, 40, 3)).astype(np.float32)
    seen: list[str] = []
    real = bigjson.tensor_from_array
    monkeypatch.setattr(bigjson, "tensor_from_array", lambda data, kind: seen.append(kind) or real(data, kind))
    raw = json.dumps({"inputs": [tensor(x.tolist(), "FP32", [1, 40, 40, 3])]}).encode()
    assert len(raw) >= bigjson.MIN_BYTES
    decoded = decode_request(bytearray(raw), None)
    assert seen == ["f"]
    array = decoded.inputs[0].data
    assert array is not None and array.dtype == np.float32 and array.shape == (1, 40, 40, 3)
    np.testing.assert_array_equal(array, x)


def test_request_fields_survive() -> None:
    raw = body(
        [tensor([1, 2, 3], "INT32", [3]), tensor(["a", "b"], "BYTES", [2], name="s"), tensor([True], "BOOL", [1], "b")],
        parameters={"binary_data_output": True, "k": "v"},
        outputs=[{"name": "y", "parameters": {"binary_data": False}}],
    )
    decoded = decode_request(bytearray(raw), None)
    assert decoded.id == PAD and decoded.parameters == {"binary_data_output": True, "k": "v"}
    assert decoded.binary_output is True
    assert decoded.outputs is not None and decoded.outputs[0].name == "y" and decoded.outputs[0].binary is False
    ints, strings, flags = (item.data for item in decoded.inputs)
    assert ints is not None and ints.dtype == np.int32 and ints.tolist() == [1, 2, 3]
    assert strings is not None and strings.tolist() == ["a", "b"]
    assert flags is not None and flags.dtype == np.bool_ and flags.tolist() == [True]


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("UINT8", [0, 255]),
        ("INT8", [-128, 127]),
        ("UINT64", [0, 2**64 - 1]),
        ("INT64", [-(2**63), 2**63 - 1]),
        ("FP16", [65504.0, -1]),
        ("FP64", [1e-308, 1.7976931348623157e308]),
    ],
)
def test_type_limits_are_kept(datatype: str, values: list[Any]) -> None:
    decoded = decode_request(bytearray(body([tensor(values, datatype, [2])])), None)
    array = decoded.inputs[0].data
    assert array is not None and array.tolist() == values


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("UINT8", [0, 256]),
        ("UINT32", [-1, 2]),  # simdjson refuses a negative unsigned: the general path says why
        ("INT8", [-129, 0]),
        ("INT32", [1.5, 2]),  # a float for an integer type
        ("FP32", [1.0, 3.5e38]),
        ("FP32", ["1.0", 2.0]),
        ("BOOL", [1, 0]),
        ("FP32", [[1.0, 2.0], 3.0, None]),
    ],
)
def test_refusals_match_the_small_path(datatype: str, values: list[Any]) -> None:
    raw = body([tensor(values, datatype, [2])])
    message = error_of(raw)
    assert message == small_error_of(raw)


def test_element_count_is_checked() -> None:
    raw = body([tensor([[1.0, 2.0], [3.0, 4.0]], "FP32", [3])])
    expected = "Invalid number of values in tensor proto container - Expected: 3 values; Actual: 4"
    assert error_of(raw).startswith(expected)


def test_invalid_json_gets_orjson_message() -> None:
    raw = body([tensor([1.0], "FP32", [1])])[:-2]
    assert error_of(raw).startswith("The request is not valid JSON - ")
    assert error_of(raw) == error_of(raw)  # stable


def test_data_that_is_not_an_array() -> None:
    raw = body([tensor(1.0, "FP32", [1])])
    assert error_of(raw) == small_error_of(raw)


def test_empty_tensor() -> None:
    decoded = decode_request(bytearray(body([tensor([], "INT8", [0, 3])])), None)
    array = decoded.inputs[0].data
    assert array is not None and array.shape == (0, 3) and array.dtype == np.int8


def test_nesting_beyond_simdjson_limit_is_a_400() -> None:
    deep = "[" * 1100 + "1" + "]" * 1100
    raw = f'{{"id":"{PAD}","inputs":[{{"name":"x","datatype":"FP32","shape":[1],"data":{deep}}}]}}'.encode()
    assert error_of(raw).startswith("The request is not valid JSON - ")  # orjson's depth limit, then


def test_nesting_limits_match_the_small_path() -> None:
    for depth in (70, 200):
        data: Any = [1.0]
        for _ in range(depth - 1):
            data = [data]
        raw = body([tensor(data, "FP32", [1])])
        assert error_of(raw) == small_error_of(raw)


def test_duplicate_keys_keep_the_last_value_as_orjson_does() -> None:
    first = json.dumps([tensor([1.0], "FP32", [1])])
    second = json.dumps([tensor([2.0, 3.0], "FP32", [2])])
    raw = f'{{"id":"{PAD}","inputs":{first},"inputs":{second}}}'.encode()
    array = decode_request(bytearray(raw), None).inputs[0].data
    assert array is not None and array.tolist() == [2.0, 3.0]
    item = '{"name":"x","datatype":"FP32","shape":[1],"data":[1.0],"data":[5.0]}'
    raw = f'{{"id":"{PAD}","inputs":[{item}]}}'.encode()
    array = decode_request(bytearray(raw), None).inputs[0].data
    assert array is not None and array.tolist() == [5.0]
