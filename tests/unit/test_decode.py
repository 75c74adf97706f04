"""JSON request decoding (fastserve.v2.decode), called directly: no server, no OpenVINO.

Covers the request structure, every datatype's JSON form with its full value range, and each
way a body can be wrong, asserting the exception's status and message.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastserve.errors import FastServeError
from fastserve.v2.datatypes import BY_NAME
from fastserve.v2.decode import MAX_NESTING_DEPTH, decode_request, json_to_array, parse_header_length

# Message prefixes, as OVMS words them.
INPUT = "Could not parse input content - "
OUTPUT = "Could not parse output content - "
REQUEST_PARAMETERS = "Could not parse request parameters - "
SCALAR = "must be a string, number or boolean"


def body(inputs: list[dict[str, Any]], **fields: Any) -> bytes:
    # The stdlib writes integers of any size, as a client might.
    return json.dumps({"inputs": inputs, **fields}).encode()


def tensor(data: Any, datatype: str = "FP32", shape: list[int] | None = None, name: str = "x") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(data)] if shape is None else shape, "data": data}


def one(data: Any, datatype: str = "FP32", shape: list[int] | None = None) -> np.ndarray:
    request = decode_request(body([tensor(data, datatype, shape)]), None)
    array = request.inputs[0].data
    assert array is not None
    return array


def refused(raw: bytes, status: int = 400) -> str:
    with pytest.raises(FastServeError) as caught:
        decode_request(raw, None)
    assert caught.value.status == status
    return caught.value.message


# The request structure


def test_fields_are_read() -> None:
    request = decode_request(
        body(
            [tensor([1, 2], "INT32", name="a", shape=[1, 2]) | {"parameters": {"note": "x"}}],
            id="req-7",
            parameters={"binary_data_output": False, "priority": 1},
            outputs=[{"name": "o1"}, {"name": "o2", "parameters": {"binary_data": True}}],
        ),
        None,
    )
    assert request.id == "req-7"
    assert request.parameters == {"binary_data_output": False, "priority": 1}
    assert request.binary_output is False
    (item,) = request.inputs
    assert (item.name, item.datatype.name, item.shape, item.parameters) == ("a", "INT32", (1, 2), {"note": "x"})
    assert item.data is not None and item.data.dtype == np.int32 and item.data.tolist() == [[1, 2]]
    assert request.outputs is not None
    assert [(o.name, o.binary) for o in request.outputs] == [("o1", None), ("o2", True)]


def test_empty_outputs_list_means_every_output() -> None:
    assert decode_request(body([tensor([1.0])], outputs=[]), None).outputs is None


def test_absent_optional_fields() -> None:
    request = decode_request(body([tensor([1.0])]), None)
    assert request.id is None and request.parameters == {} and request.outputs is None
    assert request.binary_output is False and request.inputs[0].parameters == {}


def test_body_is_json_whatever_its_bytes_type() -> None:
    raw = body([tensor([1.5])])
    for form in (raw, bytearray(raw), memoryview(raw)):
        assert decode_request(form, None).inputs[0].data.tolist() == [1.5]  # type: ignore[union-attr]


def test_no_header_length_means_no_binary_section() -> None:
    assert parse_header_length(None, 100) is None


def test_flat_and_nested_data_give_the_same_tensor() -> None:
    flat = one([1, 2, 3, 4, 5, 6], "INT32", [2, 3])
    nested = one([[1, 2, 3], [4, 5, 6]], "INT32", [2, 3])
    assert flat.shape == nested.shape == (2, 3)
    assert np.array_equal(flat, nested)


def test_only_the_element_count_is_checked_against_the_shape() -> None:
    # The reference page: data is flattened, then only its element count must match.
    assert one([[1, 2, 3], [4, 5, 6]], "FP32", [3, 2]).tolist() == [[1, 2], [3, 4], [5, 6]]


def test_empty_tensor() -> None:
    array = one([], "FP32", [0, 3])
    assert array.shape == (0, 3) and array.dtype == np.float32


# Every datatype, with its full range

INT_TYPES = ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]


@pytest.mark.parametrize("datatype", INT_TYPES)
def test_integers_keep_their_full_range(datatype: str) -> None:
    info = np.iinfo(BY_NAME[datatype].numpy)
    values = [int(info.min), 0, 1, int(info.max)]
    array = one(values, datatype)
    assert array.dtype == BY_NAME[datatype].numpy
    assert array.tolist() == values


@pytest.mark.parametrize("datatype", INT_TYPES)
@pytest.mark.parametrize("side", ["below", "above"])
def test_integers_out_of_range(datatype: str, side: str) -> None:
    info = np.iinfo(BY_NAME[datatype].numpy)
    value = int(info.min) - 1 if side == "below" else int(info.max) + 1
    message = refused(body([tensor([1, value], datatype)]))
    assert message == f"Value out of range for {datatype} in input x (allowed {info.min}..{info.max})"


@pytest.mark.parametrize("datatype", ["INT8", "UINT32"])
def test_integers_out_of_range_in_a_long_tensor(datatype: str) -> None:
    # Past 64 elements the range is checked by numpy reductions, below by Python's min/max.
    info = np.iinfo(BY_NAME[datatype].numpy)
    values = [0] * 200 + [int(info.max) + 1]
    assert refused(body([tensor(values, datatype, [201])])).startswith(f"Value out of range for {datatype} in input x")
    assert one([int(info.max)] * 201, datatype, [201]).tolist() == [int(info.max)] * 201


def test_uint64_values_beyond_int64_mixed_with_small_ones() -> None:
    # numpy guesses float64 for [2**63, 1]: the exact path must keep every bit.
    assert one([2**63, 1, 2**64 - 1], "UINT64").tolist() == [2**63, 1, 2**64 - 1]


def test_integer_literal_beyond_64_bits_is_out_of_range() -> None:
    raw = b'{"inputs":[{"name":"x","datatype":"UINT64","shape":[1],"data":[18446744073709551616]}]}'
    assert refused(raw).startswith("Value out of range for UINT64 in input x")


def test_bool() -> None:
    array = one([[True, False], [False, True]], "BOOL", [2, 2])
    assert array.dtype == np.bool_ and array.tolist() == [[True, False], [False, True]]


def test_fp16_from_json() -> None:
    values = [0.0, -2.5, 65504.0, 6.103515625e-05, 1 / 3]
    array = one(values, "FP16")
    assert array.dtype == np.float16
    assert array.tolist() == np.array(values, dtype=np.float16).tolist()


def test_fp32_from_json() -> None:
    array = one([0.1, 1, -3.4028234663852886e38], "FP32")
    assert array.dtype == np.float32
    assert array.tolist() == np.array([0.1, 1, -3.4028234663852886e38], dtype=np.float32).tolist()


def test_fp32_max_as_printed_by_float32_repr_is_accepted() -> None:
    # "3.4028235e38" is above FLT_MAX as a double, yet rounds to FLT_MAX: it must not be "out of range".
    raw = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[3.4028235e38]}]}'
    assert decode_request(raw, None).inputs[0].data.tolist() == [float(np.finfo(np.float32).max)]  # type: ignore


@pytest.mark.parametrize(("datatype", "value"), [("FP16", 65520.0), ("FP16", -70000), ("FP32", 3.5e38)])
def test_floats_that_would_become_inf_are_refused(datatype: str, value: float) -> None:
    assert refused(body([tensor([1.0, value], datatype)])).startswith(f"Value out of range for {datatype} in input x")


@pytest.mark.parametrize("length", [2, 64, 65, 1000])
def test_fp32_overflow_is_found_at_any_length(length: int) -> None:
    values = [1.0] * (length - 1) + [-3.5e38]
    assert refused(body([tensor(values, "FP32", [length])])).startswith("Value out of range for FP32 in input x")
    assert one([-3.4e38] * length, "FP32", [length]).dtype == np.float32


def test_fp64_is_exact() -> None:
    rng = np.random.default_rng(7)
    values = [0.1, 1e-308, 5e-324, 1.7976931348623157e308, *rng.standard_normal(50).tolist()]
    array = one(values, "FP64")
    assert array.dtype == np.float64
    assert array.tobytes() == np.array(values, dtype=np.float64).tobytes()


def test_bytes_strings() -> None:
    array = one([["héllo", "日本"], ["", "a\u0000b"]], "BYTES", [2, 2])
    assert array.dtype == object and array.shape == (2, 2)
    assert array.tolist() == [["héllo", "日本"], ["", "a\u0000b"]]


# Values of the wrong kind


@pytest.mark.parametrize(
    ("datatype", "data", "word"),
    [
        ("INT32", [1, 2.5], "integers"),
        ("INT32", [1.0, 2.0], "integers"),  # a float literal is a float, even when integral
        ("INT8", [-128.0], "integers"),
        ("UINT64", [1.5, 2**63], "integers"),  # numpy's float64 guess for the mix takes the exact path
        ("UINT8", [1, "2"], "integers"),
        ("INT64", [1, None], "integers"),
        ("FP32", [1.0, "2"], "numbers"),
        ("FP32", [1.0, None], "numbers"),
        ("FP32", [True, False], "numbers"),
        ("INT8", [True, False], "integers"),
        ("BOOL", [1, 0], "booleans (true/false)"),
        ("BOOL", [True, 1.0], "booleans (true/false)"),
        ("BOOL", ["true"], "booleans (true/false)"),
    ],
)
def test_values_of_the_wrong_kind(datatype: str, data: list[Any], word: str) -> None:
    message = refused(body([tensor(data, datatype)]))
    assert message == INPUT + f"data of input x holds values that are not {word}"


def test_bytes_data_must_be_strings() -> None:
    message = refused(body([tensor(["a", 1], "BYTES")]))
    assert message == INPUT + "BYTES data of input x must be strings"


def test_ragged_data_is_read_in_order_as_ovms_does() -> None:
    assert one([[1, 2], [3]], "FP32", [3]).tolist() == [1.0, 2.0, 3.0]
    assert one([1, [2, [3, 4]]], "INT8", [2, 2]).tolist() == [[1, 2], [3, 4]]
    message = refused(body([tensor([[1, 2], [3]], "FP32", [2, 2])]))
    assert message.startswith("Invalid number of values in tensor proto container - Expected: 4 values; Actual: 3")
    message = refused(body([tensor([[1, 2], [{"a": 1}]], "FP32", [3])]))
    assert message == INPUT + "data of input x holds values that are not numbers"
    # Ragged data says what is wrong with its values just as flat data does.
    assert refused(body([tensor([[1e20], [1, 2]], "INT64", [3])])) == refused(body([tensor([1e20, 1, 2], "INT64")]))


def test_element_count_mismatch() -> None:
    message = refused(body([tensor([1, 2, 3], "FP32", [2, 2])]))
    assert message == (
        "Invalid number of values in tensor proto container - Expected: 4 values; Actual: 3 values; input name: x"
    )


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth - 1):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_nesting_deeper_than_100_is_refused(datatype: str) -> None:
    data = nested(MAX_NESTING_DEPTH + 1, [1.0] if datatype == "FP32" else ["a"])
    message = refused(body([tensor(data, datatype, [1])]))
    assert message == f"JSON nesting depth exceeds the allowed limit ({MAX_NESTING_DEPTH}) in input x"


def test_nesting_beyond_numpy_dimensions_but_within_100() -> None:
    message = refused(body([tensor(nested(70, [1.0]), "FP32", [1])]))
    assert message == (INPUT + "data of input x is nested 70 deep, more than the 64 dimensions a tensor may have")


def test_bytes_nesting_of_100_is_fine() -> None:
    assert one(nested(MAX_NESTING_DEPTH, ["a"]), "BYTES", [1]).tolist() == ["a"]


def test_json_to_array_directly() -> None:
    array = json_to_array([[1, 2]], BY_NAME["INT16"], (2,), "t")
    assert array.dtype == np.int16 and array.tolist() == [1, 2]


# A malformed request structure


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "The request is not valid JSON - the body is empty (a JSON object is expected)"),
        (b"[]", "Request body should be JSON object"),
        (b'"inputs"', "Request body should be JSON object"),
        (b"null", "Request body should be JSON object"),
        (b"{}", "Invalid JSON structure, missing inputs - inputs must be a non-empty list"),
        (b'{"inputs": []}', "Invalid JSON structure, missing inputs - inputs must be a non-empty list"),
        (b'{"inputs": {}}', "Invalid JSON structure, missing inputs - inputs must be a non-empty list"),
        (b'{"inputs": [1]}', INPUT + "inputs[0] must be an object"),
    ],
)
def test_bad_documents(raw: bytes, message: str) -> None:
    assert refused(raw) == message


def test_malformed_json_names_the_position() -> None:
    message = refused(b'{"inputs": [}')
    assert message.startswith("The request is not valid JSON - ")
    assert "char 12" in message


def ok_input(**override: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}
    for key, value in override.items():
        if value is ...:
            del item[key]
        else:
            item[key] = value
    return item


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"name": ...}, INPUT + "inputs[0].name must be a non-empty string"),
        ({"name": ""}, INPUT + "inputs[0].name must be a non-empty string"),
        ({"name": 5}, INPUT + "inputs[0].name must be a non-empty string"),
        ({"shape": ...}, INPUT + "shape of input x must be a list of integers >= 0"),
        ({"shape": 1}, INPUT + "shape of input x must be a list of integers >= 0"),
        ({"shape": [-1]}, INPUT + "shape of input x must be a list of integers >= 0"),
        ({"shape": [1.0]}, INPUT + "shape of input x must be a list of integers >= 0"),
        ({"shape": [True]}, INPUT + "shape of input x must be a list of integers >= 0"),
        ({"shape": ["1"]}, INPUT + "shape of input x must be a list of integers >= 0"),
        ({"shape": [0, 2**62], "data": []}, INPUT + f"shape [0, {2**62}] of input x is too large"),
        ({"shape": [1] * 65}, INPUT + "shape of input x has 65 dimensions, more than 64"),
        ({"datatype": ...}, INPUT + "datatype of input x must be a string"),
        ({"datatype": 1}, INPUT + "datatype of input x must be a string"),
        ({"datatype": "FLOAT"}, "Unsupported data precision detected - 'FLOAT' for input x"),
        ({"datatype": "fp32"}, "Unsupported data precision detected - 'fp32' for input x"),
        ({"datatype": "FP8"}, "Unsupported data precision detected - 'FP8' for input x"),
        ({"data": 1.0}, INPUT + "data of input x must be an array"),
        ({"data": None}, INPUT + "data of input x must be an array"),
        ({"data": {"a": 1}}, INPUT + "data of input x must be an array"),
        ({"parameters": None}, "Could not parse input x parameters - parameters must be an object"),
        ({"parameters": []}, "Could not parse input x parameters - parameters must be an object"),
        ({"parameters": {"k": None}}, "Could not parse input x parameters - 'k' " + SCALAR),
        ({"parameters": {"k": {}}}, "Could not parse input x parameters - 'k' " + SCALAR),
        ({"parameters": {"k": [1]}}, "Could not parse input x parameters - 'k' " + SCALAR),
    ],
)
def test_bad_inputs(override: dict[str, Any], message: str) -> None:
    assert refused(body([ok_input(**override)])) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": 5}, "Request id must be a string"),
        ({"id": None}, "Request id must be a string"),
        ({"id": ["a"]}, "Request id must be a string"),
        ({"parameters": None}, REQUEST_PARAMETERS + "parameters must be an object"),
        ({"parameters": "x"}, REQUEST_PARAMETERS + "parameters must be an object"),
        ({"parameters": {"a": None}}, REQUEST_PARAMETERS + "'a' " + SCALAR),
        ({"parameters": {"a": {"b": 1}}}, REQUEST_PARAMETERS + "'a' " + SCALAR),
        ({"parameters": {"a": [1]}}, REQUEST_PARAMETERS + "'a' " + SCALAR),
        ({"parameters": {"binary_data_output": 1}}, REQUEST_PARAMETERS + "binary_data_output must be a boolean"),
        ({"outputs": None}, OUTPUT + "outputs must be a list"),
        ({"outputs": {"name": "y"}}, OUTPUT + "outputs must be a list"),
        ({"outputs": [{}]}, OUTPUT + "outputs[0] must be an object with a name"),
        ({"outputs": ["y"]}, OUTPUT + "outputs[0] must be an object with a name"),
        ({"outputs": [{"name": "y"}, {"name": "y"}]}, "Duplicate output name: y"),
        (
            {"outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]},
            OUTPUT + "binary_data of output y must be a boolean",
        ),
        (
            {"outputs": [{"name": "y", "parameters": {"k": None}}]},
            "Could not parse output y parameters - 'k' " + SCALAR,
        ),
    ],
)
def test_bad_request_fields(fields: dict[str, Any], message: str) -> None:
    assert refused(body([ok_input()], **fields)) == message


def test_duplicate_inputs() -> None:
    assert refused(body([ok_input(), ok_input()])) == "Duplicate input name: x"


def test_unknown_top_level_fields_are_ignored() -> None:
    request = decode_request(body([ok_input()], model_name="whatever", extra={"deep": [[1]]}), None)
    assert [item.name for item in request.inputs] == ["x"]
