"""Triton's model configuration and statistics extensions on the real server, field by field.

The JSON is checked against Triton's documents: docs/protocol/extension_model_configuration.md
(the ModelConfig of model_config.proto, keys as the proto's field names) and
extension_statistics.md ($model_stat, $inference_stats, $batch_stats, $duration_stat); over gRPC
the answers are parsed by tritonclient's own copies of Triton's .proto files. Counts are read as
differences (other tests share the server), and every count follows from requests sent here.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from tests.rawhttp import Conn, build, get
from tests.serverproc import ServerProcess
from tests.tritonrepo import BATCHED_DELAY_US, BATCHED_MAX, RANGED_MAX

ADD_BODY = json.dumps({"inputs": [
    {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
    {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10},
]}).encode()  # fmt: skip
DURATION_KEYS = {"count", "ns"}
INFERENCE_STATS_KEYS = {"success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                        "cache_hit", "cache_miss"}
MODEL_STAT_KEYS = {"name", "version", "last_inference", "inference_count", "execution_count", "inference_stats",
                   "response_stats", "batch_stats", "memory_usage"}


def doc(server: ServerProcess, path: str) -> Any:
    reply = get(server.port, path)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


def post(server: ServerProcess, path: str, body: bytes) -> int:
    with Conn(server.port) as conn:
        return conn.request("POST", path, body).status


def one_stat(server: ServerProcess, model: str, version: str = "1") -> dict[str, Any]:
    (stat,) = doc(server, f"/v2/models/{model}/versions/{version}/stats")["model_stats"]
    return stat


def tensor(name: str, data_type: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "data_type": data_type, "format": "FORMAT_NONE", "dims": dims, "is_shape_tensor": False,
            "allow_ragged_batch": False, "optional": False, "is_non_linear_format_io": False}


def output(name: str, data_type: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "data_type": data_type, "dims": dims, "label_filename": "", "is_shape_tensor": False,
            "is_non_linear_format_io": False}


# GET /v2 and the config documents


def test_both_extensions_are_listed_in_server_metadata(triton_server: ServerProcess) -> None:
    extensions = doc(triton_server, "/v2")["extensions"]
    assert {"model_configuration", "statistics", "binary_tensor_data"} <= set(extensions)


def test_static_model_config_field_by_field(triton_server: ServerProcess) -> None:
    config = doc(triton_server, "/v2/models/add/config")
    (group,) = config.pop("instance_group")
    assert group.pop("count") >= 1  # OpenVINO's streams: 1 under the LATENCY hint on most CPUs
    assert group == {"name": "add", "kind": "KIND_CPU", "gpus": [], "secondary_devices": [], "profile": [],
                     "passive": False, "host_policy": ""}
    parameters = config.pop("parameters")
    assert parameters["PERFORMANCE_HINT"] == {"string_value": "LATENCY"}  # OVMS's default, as loaded
    assert parameters["TARGET_DEVICE"] == {"string_value": "CPU"}
    assert int(parameters["NIREQ"]["string_value"]) >= 2
    assert config == {
        "name": "add", "platform": "openvino", "backend": "openvino", "runtime": "",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 0,  # a static [1,10] model: no batch dimension to vary
        "input": [tensor("a", "TYPE_FP32", [1, 10]), tensor("b", "TYPE_FP32", [1, 10])],
        "output": [output("sum", "TYPE_FP32", [1, 10]), output("diff", "TYPE_FP32", [1, 10])],
        "batch_input": [], "batch_output": [], "default_model_filename": "", "cc_model_filenames": {},
        "metric_tags": {}, "model_warmup": [], "model_transaction_policy": {"decoupled": False},
        "response_cache": {"enable": False},
    }  # fmt: skip
    assert "dynamic_batching" not in config


@pytest.mark.parametrize(("model", "max_batch", "dims"), [
    ("dynamic", 0, [-1, -1]),  # dynamic, not batched by fastserve: the whole shape, -1 where dynamic
    ("batched", BATCHED_MAX, [-1]),  # fastserve batches it: max_batch_size, dims without the batch
    ("ranged", RANGED_MAX, [-1]),  # batched up to 8, but dim 0 is 1:4: no more rows than the model takes
    ("auto", 4, [4]),  # OVMS's batch_size "auto", unbounded: Triton's default-max-batch-size
    ("versioned", 0, [-1, 4]),
])  # fmt: skip
def test_max_batch_size_and_dims(triton_server: ServerProcess, model: str, max_batch: int, dims: list[int]) -> None:
    config = doc(triton_server, f"/v2/models/{model}/config")
    assert config["max_batch_size"] == max_batch
    assert [t["dims"] for t in config["input"] + config["output"]] == [dims, dims]
    assert [t["data_type"] for t in config["input"] + config["output"]] == ["TYPE_FP32", "TYPE_FP32"]
    assert ("dynamic_batching" in config) == (model in ("batched", "ranged"))


def test_dynamic_batching_block(triton_server: ServerProcess) -> None:
    batching = doc(triton_server, "/v2/models/batched/config")["dynamic_batching"]
    assert batching == {"preferred_batch_size": [BATCHED_MAX], "max_queue_delay_microseconds": BATCHED_DELAY_US,
                        "preserve_ordering": False, "priority_levels": 0, "default_priority_level": 0,
                        "priority_queue_policy": {}}


def test_versions_and_policies(triton_server: ServerProcess) -> None:
    assert doc(triton_server, "/v2/models/versioned/config")["version_policy"] == {"all": {}}
    assert doc(triton_server, "/v2/models/versioned/versions/1/config")["name"] == "versioned"
    assert doc(triton_server, "/v2/models/auto/config")["version_policy"] == {"specific": {"versions": [1]}}


def test_pipeline_config(triton_server: ServerProcess) -> None:
    config = doc(triton_server, "/v2/models/add_twice/config")
    assert doc(triton_server, "/v2/models/add_twice/versions/1/config") == config  # the version form too
    assert (config["name"], config["platform"], config["backend"], config["max_batch_size"]) == (
        "add_twice", "openvino", "openvino", 0)
    assert config["input"] == [tensor("a", "TYPE_FP32", [1, 10]), tensor("b", "TYPE_FP32", [1, 10])]
    assert config["output"] == [output("total", "TYPE_FP32", [1, 10])]
    assert config["instance_group"] == [] and "ensemble_scheduling" not in config  # no composing configs to ask


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/v2/models/nope/config", 404, "Model with requested name is not found"),
    ("/v2/models/versioned/versions/9/config", 404, "Model with requested version is not found"),
    ("/v2/models/nope/stats", 404, "Model with requested name is not found"),
    ("/v2/models/versioned/versions/9/stats", 404, "Model with requested version is not found"),
    ("/v2/models/versioned/versions/x/config", 400, "Invalid request URL: model version 'x' is not a number"),
    ("/v2/models/versioned/versions/x/stats", 400, "Invalid request URL: model version 'x' is not a number"),
])  # fmt: skip
def test_errors(triton_server: ServerProcess, path: str, status: int, message: str) -> None:
    reply = get(triton_server.port, path)
    assert (reply.status, reply.json()) == (status, {"error": message})


def test_wrong_method_is_405(triton_server: ServerProcess) -> None:
    with Conn(triton_server.port) as conn:
        reply = conn.request("POST", "/v2/models/add/config", b"{}")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD, OPTIONS"


# Statistics


def test_stats_document_shape(triton_server: ServerProcess) -> None:
    stat = one_stat(triton_server, "add")
    assert set(stat) == MODEL_STAT_KEYS
    assert (stat["name"], stat["version"]) == ("add", "1")
    assert set(stat["inference_stats"]) == INFERENCE_STATS_KEYS
    for duration in stat["inference_stats"].values():
        assert set(duration) == DURATION_KEYS and all(isinstance(v, int) and v >= 0 for v in duration.values())
    for batch in stat["batch_stats"]:
        assert set(batch) == {"batch_size", "compute_input", "compute_infer", "compute_output"}


def test_every_model_version_and_pipeline_is_listed(triton_server: ServerProcess) -> None:
    listed = [(s["name"], s["version"]) for s in doc(triton_server, "/v2/models/stats")["model_stats"]]
    assert listed == [("add", "1"), ("auto", "1"), ("batched", "1"), ("dynamic", "1"), ("ranged", "1"),
                      ("versioned", "1"), ("versioned", "2"), ("add_twice", "1")]
    every_version = doc(triton_server, "/v2/models/versioned/stats")["model_stats"]
    assert [s["version"] for s in every_version] == ["1", "2"]  # Triton: no version in the URL, all of them


def test_rest_and_grpc_inferences_and_failures_are_counted(triton_server: ServerProcess) -> None:
    before = one_stat(triton_server, "add")
    started_ms = time.time() * 1e3
    for _ in range(3):
        assert post(triton_server, "/v2/models/add/infer", ADD_BODY) == 200
    client = grpcclient.InferenceServerClient(triton_server.grpc_host)
    inputs = []
    for name in ("a", "b"):
        item = grpcclient.InferInput(name, [1, 10], "FP32")
        item.set_data_from_numpy(np.ones((1, 10), np.float32))
        inputs.append(item)
    for _ in range(2):
        client.infer("add", inputs)
    bad = ADD_BODY.replace(b"[1, 10]", b"[2, 5]", 1)
    assert post(triton_server, "/v2/models/add/infer", bad) == 400  # reached the model: a failure of it
    assert post(triton_server, "/v2/models/nope/infer", ADD_BODY) == 404  # no model: counted nowhere
    after = one_stat(triton_server, "add")
    ended_ms = time.time() * 1e3

    def delta(*keys: str) -> int:
        a, b = after, before
        for key in keys:
            a, b = a[key], b[key]
        return a - b

    assert delta("inference_count") == delta("execution_count") == 5
    for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert delta("inference_stats", phase, "count") == 5, phase
    assert delta("inference_stats", "fail", "count") == 1
    assert delta("inference_stats", "success", "ns") >= delta("inference_stats", "compute_infer", "ns") > 0
    assert delta("inference_stats", "compute_input", "ns") > 0 and delta("inference_stats", "fail", "ns") > 0
    assert started_ms - 1000 <= after["last_inference"] <= ended_ms + 1000
    batches = {b["batch_size"]: b for b in after["batch_stats"]}
    old = {b["batch_size"]: b["compute_infer"]["count"] for b in before["batch_stats"]}
    assert set(batches) == {1} and batches[1]["compute_infer"]["count"] - old.get(1, 0) == 5  # unbatched: size 1


def test_batched_model_counts_rows_and_executions(triton_server: ServerProcess) -> None:
    before = one_stat(triton_server, "batched")
    requests = 12
    body = json.dumps({"inputs": [{"name": "x", "shape": [3, 2], "datatype": "FP32", "data": [1] * 6}]}).encode()
    with ThreadPoolExecutor(6) as pool:  # however they join up, rows and executions must add up
        assert list(pool.map(lambda _: post(triton_server, "/v2/models/batched/infer", body), range(requests))) == [
            200] * requests
    after = one_stat(triton_server, "batched")
    rows = 3 * requests
    assert after["inference_count"] - before["inference_count"] == rows  # max_batch_size > 0: rows are inferences
    executions = after["execution_count"] - before["execution_count"]
    assert 1 <= executions <= requests
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == requests

    def executed(stat: dict[str, Any]) -> tuple[int, int]:
        counts = [(b["batch_size"], b["compute_infer"]["count"]) for b in stat["batch_stats"]]
        return sum(c for _, c in counts), sum(size * c for size, c in counts)

    (runs_before, rows_before), (runs_after, rows_after) = executed(before), executed(after)
    assert (runs_after - runs_before, rows_after - rows_before) == (executions, rows)


def test_pipeline_and_its_nodes_are_counted(triton_server: ServerProcess) -> None:
    pipeline_before, add_before = one_stat(triton_server, "add_twice"), one_stat(triton_server, "add")
    assert [s["name"] for s in doc(triton_server, "/v2/models/add_twice/stats")["model_stats"]] == ["add_twice"]
    for _ in range(2):
        assert post(triton_server, "/v2/models/add_twice/infer", ADD_BODY) == 200
    pipeline_after, add_after = one_stat(triton_server, "add_twice"), one_stat(triton_server, "add")
    assert pipeline_after["inference_count"] - pipeline_before["inference_count"] == 2
    assert add_after["inference_count"] - add_before["inference_count"] == 4  # two DL nodes on "add" each


# gRPC: tritonclient parses the answers with Triton's own model_config.proto / grpc_service.proto


def test_grpc_model_config_in_tritons_messages(triton_server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_host)
    config = client.get_model_config("batched").config
    assert (config.name, config.platform, config.backend, config.max_batch_size) == (
        "batched", "openvino", "openvino", BATCHED_MAX)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("x", mc.TYPE_FP32, [-1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("y", mc.TYPE_FP32, [-1])]
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == BATCHED_DELAY_US
    assert list(config.dynamic_batching.preferred_batch_size) == [BATCHED_MAX]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and config.instance_group[0].count >= 1
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.parameters["TARGET_DEVICE"].string_value == "CPU"
    static = client.get_model_config("add").config
    assert static.max_batch_size == 0 and static.WhichOneof("scheduling_choice") is None
    assert [list(t.dims) for t in static.input] == [[1, 10], [1, 10]]


def test_grpc_statistics_match_rest(triton_server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_host)
    rest = one_stat(triton_server, "add")
    (grpc,) = client.get_inference_statistics("add", "1").model_stats
    assert (grpc.name, grpc.version, grpc.inference_count, grpc.execution_count, grpc.last_inference) == (
        "add", "1", rest["inference_count"], rest["execution_count"], rest["last_inference"])
    for phase in INFERENCE_STATS_KEYS:
        measured = getattr(grpc.inference_stats, phase)
        assert {"count": measured.count, "ns": measured.ns} == rest["inference_stats"][phase], phase
    listed = client.get_inference_statistics("").model_stats  # Triton: no name, every model
    assert len(listed) == len(doc(triton_server, "/v2/models/stats")["model_stats"])


@pytest.mark.parametrize(("call", "args"), [("get_model_config", ("nope",)), ("get_inference_statistics", ("nope",)),
                                            ("get_model_config", ("versioned", "9"))])
def test_grpc_unknown_models_are_not_found(triton_server: ServerProcess, call: str, args: tuple[str, ...]) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_host)
    with pytest.raises(InferenceServerException) as raised:
        getattr(client, call)(*args)
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_head_of_stats_has_no_body(triton_server: ServerProcess) -> None:
    with Conn(triton_server.port) as conn:
        conn.send(build("HEAD", "/v2/models/add/stats"))
        reply = conn.read(head_only=True)
    assert reply.status == 200 and reply.body == b""
