"""The KServe v2 endpoints and JSON inference against the real server on the model zoo.

Raw sockets (tests/rawhttp.py) so the exact status, headers and body are checked. Every
datatype goes through the zoo's identity model of that type; values are chosen at the
edges of each type (within the int32 range for INT64, which is all the OpenVINO CPU plugin
keeps; the codec's full 64-bit range is covered by tests/unit/test_decode.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from tests.rawhttp import Conn, Reply, get, post_json
from tests.serverproc import ServerProcess


def infer(server: ServerProcess, model: str, doc: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
    reply = post_json(server.port, path, doc)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()


def single(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


def outputs_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in doc["outputs"]}


def json_reply(reply: Reply) -> Any:
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()


# Health and metadata


@pytest.mark.parametrize(("path", "body"), [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True})])
def test_health_is_200_with_kserves_json_body(server: ServerProcess, path: str, body: dict) -> None:
    reply = get(server.port, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == body  # KServe's InferenceRESTClient reads these keys


def test_server_metadata(server: ServerProcess) -> None:
    doc = json_reply(get(server.port, "/v2"))
    assert set(doc) == {"name", "version", "extensions"}
    assert doc["name"] == "fastserve"
    assert isinstance(doc["version"], str) and doc["version"]
    assert isinstance(doc["extensions"], list) and "binary_tensor_data" in doc["extensions"]


VERSIONED = {
    "name": "versioned",
    "versions": ["1", "2", "3"],
    "platform": "OpenVINO",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
}


@pytest.mark.parametrize("suffix", ["", "/versions/1", "/versions/2", "/versions/3"])
def test_model_metadata_with_and_without_version(server: ServerProcess, suffix: str) -> None:
    # OVMS lists every served version whichever one is asked for.
    assert json_reply(get(server.port, f"/v2/models/versioned{suffix}")) == VERSIONED


@pytest.mark.parametrize(
    ("model", "inputs", "outputs"),
    [
        # add's outputs are sum, diff in port order: the metadata sorts them by name.
        (
            "add",
            [("a", "FP32", [1, 10]), ("b", "FP32", [1, 10])],
            [("diff", "FP32", [1, 10]), ("sum", "FP32", [1, 10])],
        ),
        ("ranged", [("x", "FP32", [-1, 3])], [("y", "FP32", [-1, 3])]),  # a range [1~4] is reported as -1
        ("dynamic", [("x", "FP32", [-1, -1])], [("y", "FP32", [-1, -1])]),
        ("string", [("text", "BYTES", [-1])], [("echo", "BYTES", [-1]), ("length", "INT32", [-1])]),
        ("failing", [("shape", "INT64", [2]), ("x", "FP32", [-1])], [("y", "FP32", [-1, -1])]),
        ("identity_uint64", [("in", "UINT64", [-1, -1])], [("out", "UINT64", [-1, -1])]),
    ],
)
def test_model_metadata_in_ovms_format(
    server: ServerProcess, model: str, inputs: list[tuple[str, str, list[int]]], outputs: list[Any]
) -> None:
    def tensors(items: list[tuple[str, str, list[int]]]) -> list[dict[str, Any]]:
        return [{"name": n, "datatype": t, "shape": s} for n, t, s in items]

    doc = json_reply(get(server.port, f"/v2/models/{model}"))
    assert doc == {
        "name": model,
        "versions": ["1"],
        "platform": "OpenVINO",
        "inputs": tensors(inputs),
        "outputs": tensors(outputs),
    }


@pytest.mark.parametrize("suffix", ["", "/versions/1", "/versions/3"])
def test_model_ready(server: ServerProcess, suffix: str) -> None:
    reply = get(server.port, f"/v2/models/versioned{suffix}/ready")
    assert reply.status == 200
    assert reply.body == b""


# Versions


@pytest.mark.parametrize(("version", "added"), [(None, 3.0), (1, 1.0), (2, 2.0), (3, 3.0)])
def test_infer_picks_the_version(server: ServerProcess, version: int | None, added: float) -> None:
    # versioned's version v computes x + v; no version in the URL means the latest served (3).
    doc = infer(server, "versioned", single("x", "FP32", [1, 4], [0, 1, 2, 3]), version)
    assert doc["model_name"] == "versioned"
    assert doc["model_version"] == str(int(added))
    assert doc["outputs"][0]["data"] == [0 + added, 1 + added, 2 + added, 3 + added]


# The response document


ADD_REQUEST = {
    "inputs": [
        {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": [[float(i) for i in range(10)]]},
        {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.5] * 10},
    ]
}


def test_response_document(server: ServerProcess) -> None:
    doc = infer(server, "add", ADD_REQUEST)
    assert list(doc) == ["model_name", "model_version", "id", "outputs"]  # no "parameters": null
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("add", "1", "")
    assert [o["name"] for o in doc["outputs"]] == ["diff", "sum"]
    for output in doc["outputs"]:
        assert list(output) == ["name", "datatype", "shape", "data"]
        assert output["datatype"] == "FP32" and output["shape"] == [1, 10]
    sums = outputs_by_name(doc)
    assert sums["sum"]["data"] == [i + 0.5 for i in range(10)]
    assert sums["diff"]["data"] == [i - 0.5 for i in range(10)]


def test_id_is_echoed(server: ServerProcess) -> None:
    assert infer(server, "add", {**ADD_REQUEST, "id": "my-request-42"})["id"] == "my-request-42"
    assert infer(server, "add", {**ADD_REQUEST, "id": ""})["id"] == ""


def test_request_parameters_are_accepted(server: ServerProcess) -> None:
    doc = {
        **ADD_REQUEST,
        "parameters": {"binary_data_output": False, "priority": 3, "note": "x", "ratio": 0.5},
        "inputs": [{**item, "parameters": {"anything": True}} for item in ADD_REQUEST["inputs"]],
    }
    assert "parameters" not in infer(server, "add", doc)


@pytest.mark.parametrize(
    ("wanted", "names"), [(["sum"], ["sum"]), (["sum", "diff"], ["sum", "diff"]), ([], ["diff", "sum"])]
)
def test_requested_outputs_select_what_comes_back(server: ServerProcess, wanted: list[str], names: list[str]) -> None:
    doc = infer(server, "add", {**ADD_REQUEST, "outputs": [{"name": n} for n in wanted]})
    assert [o["name"] for o in doc["outputs"]] == names


@pytest.mark.parametrize("content_type", [None, "application/json", "application/octet-stream", "text/plain"])
def test_body_is_json_whatever_the_content_type(server: ServerProcess, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", json.dumps(ADD_REQUEST).encode(), headers)
    assert outputs_by_name(json_reply(reply))["sum"]["data"][0] == 0.5


# Every datatype


NUMPY = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


def type_values(datatype: str) -> list[Any]:
    """Six values at the edges of the type, as JSON numbers."""
    if datatype == "BOOL":
        return [True, False, False, True, True, False]
    if datatype == "INT64":
        return [-(2**31), -1, 0, 1, 123456789, 2**31 - 1]  # the CPU plugin keeps int32's range only
    if datatype == "FP16":
        return [0.0, -2.5, 65504.0, 6.103515625e-05, 5.960464477539063e-08, 0.0999755859375]
    if datatype == "FP32":
        return [0.1, -1.5, 3.4028234663852886e38, 1.401298464324817e-45, 1 / 3, 16777216.0]
    if datatype == "FP64":
        return [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -2.718281828459045, 1e-300]
    info = np.iinfo(NUMPY[datatype])
    return [int(info.min), int(info.min) + 1, 0, 1, int(info.max) - 1, int(info.max)]


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("datatype", list(NUMPY))
def test_identity_round_trip(server: ServerProcess, datatype: str, nested: bool) -> None:
    values = type_values(datatype)
    data: Any = [values[:3], values[3:]] if nested else values
    doc = infer(server, f"identity_{datatype.lower()}", single("in", datatype, [2, 3], data))
    (output,) = doc["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("out", datatype, [2, 3])
    sent = np.array(values, dtype=NUMPY[datatype])
    got = np.array(output["data"], dtype=NUMPY[datatype])
    assert got.tobytes() == sent.tobytes()  # bit-exact, FP16 and FP64 included
    if datatype in ("UINT64", "FP64", "BOOL") or datatype.startswith("INT"):
        assert output["data"] == values  # the JSON numbers themselves are exact


def test_uint64_full_range(server: ServerProcess) -> None:
    values = [0, 1, 2**32, 2**53 + 1, 2**63, 2**64 - 1]
    doc = infer(server, "identity_uint64", single("in", "UINT64", [1, 6], values))
    assert doc["outputs"][0]["data"] == values


def test_fp64_keeps_every_bit(server: ServerProcess) -> None:
    values = [0.1, 0.2, 0.1 + 0.2, *np.random.default_rng(5).standard_normal(17).tolist()]
    doc = infer(server, "identity_fp64", single("in", "FP64", [4, 5], values))
    assert doc["outputs"][0]["data"] == values


def test_fp32_comes_back_in_its_shortest_form(server: ServerProcess) -> None:
    reply = post_json(server.port, "/v2/models/identity_fp32/infer", single("in", "FP32", [1, 1], [0.1]))
    assert b'"data":[0.1]' in reply.body  # not 0.10000000149011612


def test_strings(server: ServerProcess) -> None:
    texts = ["héllo", "日本語テキスト", "", "plain ascii", "emoji \U0001f600"]
    doc = infer(server, "string", single("text", "BYTES", [5], texts))
    outputs = outputs_by_name(doc)
    assert outputs["echo"] == {"name": "echo", "datatype": "BYTES", "shape": [5], "data": texts}
    assert outputs["length"] == {
        "name": "length",
        "datatype": "INT32",
        "shape": [5],
        "data": [len(t.encode()) for t in texts],  # UTF-8 byte lengths
    }


def test_empty_string_batch(server: ServerProcess) -> None:
    doc = infer(server, "string", single("text", "BYTES", [0], []))
    assert {o["name"]: (o["shape"], o["data"]) for o in doc["outputs"]} == {"echo": ([0], []), "length": ([0], [])}


# Shapes against the model


@pytest.mark.parametrize("shape", [[1, 1], [3, 5], [7, 1], [1, 300], [0, 4]])
def test_dynamic_dims(server: ServerProcess, shape: list[int]) -> None:
    count = shape[0] * shape[1]
    values = [i * 0.25 for i in range(count)]
    doc = infer(server, "dynamic", single("x", "FP32", shape, values))
    assert doc["outputs"][0]["shape"] == shape
    assert doc["outputs"][0]["data"] == [v * 2 for v in values]


@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_ranged_batch_inside_the_range(server: ServerProcess, batch: int) -> None:
    values = [float(i) for i in range(batch * 3)]
    doc = infer(server, "ranged", single("x", "FP32", [batch, 3], values))
    assert doc["outputs"][0]["shape"] == [batch, 3]
    assert doc["outputs"][0]["data"] == [v + 1 for v in values]


def test_heavy_model_runs_on_the_async_path(server: ServerProcess) -> None:
    assert "loaded model heavy version 1" in server.log()
    # The zoo's config.json asks for it (execution_mode: async): how fast heavy is decides nothing.
    assert [line for line in server.log().splitlines() if "loaded model heavy" in line][0].count("async") == 1
    x = np.full((1, 3, 64, 64), 0.5, dtype=np.float32)
    doc = infer(server, "heavy", single("x", "FP32", [1, 3, 64, 64], x.tolist()))
    (output,) = doc["outputs"]
    assert output["shape"] == [1, 16] and output["datatype"] == "FP32"
    assert all(v >= 0 for v in output["data"]) and any(v > 0 for v in output["data"])  # mean of ReLUs


def test_auto_models_run_inline_exactly_when_their_warm_up_is_short(server: ServerProcess) -> None:
    # The rule itself, whatever this CPU's speed: inline below 500 us of warm-up, async above.
    modes = re.findall(r"loaded model (\S+) version \d+ .*; (inline|async), nireq \d+, warm-up (\d+) us",
                       server.log())
    assert len(modes) > 10, modes
    for name, mode, warm_up_us in modes:
        assert (mode == "inline") == (int(warm_up_us) < 500), (name, mode, warm_up_us)


def test_non_finite_outputs_are_null(server: ServerProcess) -> None:
    # dynamic doubles x: 3e38 * 2 overflows FP32. JSON has no infinity, so the value is null.
    doc = infer(server, "dynamic", single("x", "FP32", [1, 3], [3e38, -3e38, 1.0]))
    assert doc["outputs"][0]["data"] == [None, None, 2.0]
