"""Response encoding (fastserve.v2.encode), called directly: no server, no OpenVINO.

The JSON head is parsed back with the stdlib json module and compared value by value, so a
lossy number format or a wrong key would show.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastserve.errors import FastServeError
from fastserve.v2.datatypes import BY_NAME
from fastserve.v2.decode import decode_request
from fastserve.v2.encode import encode_response, select_outputs
from fastserve.v2.types import InferRequest, TensorSpec


def spec(name: str, datatype: str, index: int = 0) -> TensorSpec:
    return TensorSpec(name, BY_NAME[datatype], datatype.lower(), ((0, -1),), index)


OUTPUTS = {s.name: s for s in (spec("diff", "FP32", 1), spec("sum", "FP32", 0))}


def parsed(doc: dict[str, Any]) -> InferRequest:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0]}], **doc}
    return decode_request(json.dumps(doc).encode(), None)


def encode_one(array: np.ndarray, datatype: str, request: InferRequest | None = None) -> dict[str, Any]:
    encoded = encode_response("m", "1", request or parsed({}), [(spec("out", datatype), False, array)])
    assert encoded.parts == [] and encoded.header_length is None
    doc = json.loads(encoded.head)
    (output,) = doc["outputs"]
    return output


# Which outputs come back


def test_all_outputs_sorted_by_name_when_none_are_requested() -> None:
    assert [(s.name, binary) for s, binary in select_outputs(parsed({}), OUTPUTS)] == [
        ("diff", False),
        ("sum", False),
    ]


def test_requested_outputs_in_request_order() -> None:
    chosen = select_outputs(parsed({"outputs": [{"name": "sum"}]}), OUTPUTS)
    assert [s.name for s, _ in chosen] == ["sum"]
    chosen = select_outputs(parsed({"outputs": [{"name": "sum"}, {"name": "diff"}]}), OUTPUTS)
    assert [s.name for s, _ in chosen] == ["sum", "diff"]


def test_unknown_output_is_400() -> None:
    with pytest.raises(FastServeError) as caught:
        select_outputs(parsed({"outputs": [{"name": "sum"}, {"name": "prod"}]}), OUTPUTS)
    assert caught.value.status == 400
    assert caught.value.message == "Unknown output name: prod (the model's outputs are: diff, sum)"


def test_per_output_binary_flag_overrides_the_request_level_one() -> None:
    request = parsed(
        {
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "sum"}, {"name": "diff", "parameters": {"binary_data": False}}],
        }
    )
    assert [(s.name, binary) for s, binary in select_outputs(request, OUTPUTS)] == [("sum", True), ("diff", False)]


# The response document


def test_response_fields() -> None:
    arrays = [np.array([[1.5, 2.5]], dtype=np.float32), np.array([[0.5, -0.5]], dtype=np.float32)]
    outputs = [(OUTPUTS["diff"], False, arrays[1]), (OUTPUTS["sum"], False, arrays[0])]
    encoded = encode_response("add", "3", parsed({"id": "abc"}), outputs)
    doc = json.loads(encoded.head)
    assert doc == {
        "model_name": "add",
        "model_version": "3",
        "id": "abc",
        "outputs": [
            {"name": "diff", "datatype": "FP32", "shape": [1, 2], "data": [0.5, -0.5]},
            {"name": "sum", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]},
        ],
    }
    assert "parameters" not in encoded.head.decode()  # absent, never null


def test_id_is_empty_when_the_request_had_none() -> None:
    encoded = encode_response("m", "1", parsed({}), [(spec("out", "FP32"), False, np.zeros(1, np.float32))])
    assert json.loads(encoded.head)["id"] == ""


# Every datatype's JSON form


@pytest.mark.parametrize("datatype", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"])
def test_integers_full_range(datatype: str) -> None:
    info = np.iinfo(BY_NAME[datatype].numpy)
    values = [int(info.min), 0, int(info.max)]
    output = encode_one(np.array(values, dtype=BY_NAME[datatype].numpy), datatype)
    assert output == {"name": "out", "datatype": datatype, "shape": [3], "data": values}


def test_bool() -> None:
    assert encode_one(np.array([[True], [False]]), "BOOL")["data"] == [True, False]


def test_fp16_is_written_as_json_numbers() -> None:
    values = np.array([0.1, -2.5, 65504, 6e-8], dtype=np.float16)
    data = encode_one(values, "FP16")["data"]
    assert np.array(data, dtype=np.float16).tobytes() == values.tobytes()


def test_fp32_shortest_form_round_trips() -> None:
    values = np.array([0.1, 1 / 3, 3.4028235e38, 1e-45], dtype=np.float32)
    encoded = encode_response("m", "1", parsed({}), [(spec("out", "FP32"), False, values)])
    assert b"0.1," in encoded.head  # not 0.10000000149011612 as a widened double
    data = json.loads(encoded.head)["outputs"][0]["data"]
    assert np.array(data, dtype=np.float32).tobytes() == values.tobytes()


def test_fp64_is_exact() -> None:
    values = np.array([0.1, 1 / 3, 5e-324, 1.7976931348623157e308, *np.random.default_rng(3).standard_normal(20)])
    data = encode_one(values, "FP64")["data"]
    assert np.array(data, dtype=np.float64).tobytes() == values.tobytes()


def test_bytes_are_strings() -> None:
    values = np.array([b"h\xc3\xa9llo", "日本", b""], dtype=object)
    assert encode_one(values, "BYTES")["data"] == ["héllo", "日本", ""]


def test_nd_output_is_flattened_in_logical_order() -> None:
    transposed = np.arange(6, dtype=np.int32).reshape(2, 3).T  # not C-contiguous
    output = encode_one(transposed, "INT32")
    assert output["shape"] == [3, 2] and output["data"] == [0, 3, 1, 4, 2, 5]


def test_big_endian_output() -> None:
    output = encode_one(np.array([1.5, -2.0], dtype=">f8"), "FP64")
    assert output["data"] == [1.5, -2.0]


def test_empty_output() -> None:
    output = encode_one(np.zeros((0, 3), dtype=np.float32), "FP32")
    assert output["shape"] == [0, 3] and output["data"] == []


# A binary output next to a JSON one


def test_binary_output_is_a_view_with_its_size() -> None:
    values = np.arange(4, dtype=np.float32)
    outputs = [(OUTPUTS["diff"], True, values), (OUTPUTS["sum"], False, values)]
    encoded = encode_response("m", "1", parsed({}), outputs)
    doc = json.loads(encoded.head)
    assert doc["outputs"][0] == {
        "name": "diff",
        "datatype": "FP32",
        "shape": [4],
        "parameters": {"binary_data_size": 16},
    }
    assert doc["outputs"][1]["data"] == [0.0, 1.0, 2.0, 3.0]
    assert encoded.header_length == len(encoded.head)
    (part,) = encoded.parts
    assert bytes(part) == values.tobytes()


def test_every_json_writes_the_same_bytes_as_encode_selected() -> None:
    from fastserve.v2.encode import EveryJson, encode_selected

    selected = [(spec("diff", "INT64", 1), False), (spec("s\u00e9", "FP32", 0), False)]
    every = EveryJson.build('m"1', "7", selected)
    assert every is not None and every.selected is selected
    for request_id in (None, "", 'a"b\\c\u00e9'):
        request = InferRequest(request_id, {}, [], None, False)
        for arrays in (
            [np.array([[1, -2]], np.int64), np.array([[0.5, 1e30, -0.0]], np.float32)],
            [np.arange(6, dtype=np.int64).reshape(2, 3).T, np.float32(3).reshape(())],  # a transposed copy, a scalar
        ):
            assert every(request_id, arrays) == encode_selected('m"1', "7", request, selected, arrays).head
    one = [(spec("out", "FP32"), False)]
    single = EveryJson.build("m", "1", one)
    assert single is not None
    ones = [np.ones((1, 2), np.float32)]
    assert single("x", ones) == encode_selected("m", "1", InferRequest("x", {}, [], None, False), one, ones).head
    # What orjson cannot take as it is goes back to encode_selected, which converts or refuses it.
    for array in (np.arange(8, dtype=np.float32)[::2], np.ones(2, ">f4"), np.array(["a"]), np.array([b"a"], object)):
        assert single(None, [array]) is None


def test_every_json_is_only_for_plain_json_numbers() -> None:
    from fastserve.v2.encode import EveryJson

    assert EveryJson.build("m", "1", []) is None
    assert EveryJson.build("m", "1", [(spec("out", "FP32"), True)]) is None  # binary
    for datatype in ("BYTES", "BF16"):
        assert EveryJson.build("m", "1", [(spec("out", datatype), False)]) is None
    unmapped = TensorSpec("out", None, "u4", ((0, -1),), 0)
    assert EveryJson.build("m", "1", [(unmapped, False)]) is None
