"""The model repository end to end: version folders and policies, IR and ONNX files, a single model
file as base_path, shape/batch_size reshapes, weights-free models; plus loader.py in-process
(plugin_config really reaching the compiled model, and the load errors that name the model).

One server serves every model of this module; the zoo's "versioned" model answers y = x + version,
so each answer tells which version ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openvino as ov
import pytest
from onnx import TensorProto, helper

from fastserve.config import model_from_dict
from fastserve.errors import ConfigError
from fastserve.models.loader import load_version, select_versions
from fastserve.settings import ModelSettings
from tests.cpus import CPUS
from tests.modelzoo import add_model, dynamic_model, save, versioned_model
from tests.rawhttp import Reply, get, post_json
from tests.serverproc import ServerProcess

ONNX_SCALE = [1.0, 2.0, 3.0]


def scale_onnx_model() -> onnx.ModelProto:
    """ONNX, written with onnx.helper: input x FP32 [batch,3]; output y = x * [1, 2, 3]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [3], ONNX_SCALE)
    graph = helper.make_graph([helper.make_node("Mul", ["x", "scale"], ["y"])], "scale", [x], [y], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="fastserve-tests")
    model.ir_version = 8  # readable by every OpenVINO release we support
    onnx.checker.check_model(model)
    return model


# name -> extra config fields; every base_path is relative to config.json's folder.
MODELS: dict[str, dict[str, Any]] = {
    "latest_default": {"base_path": "versioned"},
    "latest2": {"base_path": "versioned", "model_version_policy": {"latest": {"num_versions": 2}}},
    "specific13": {"base_path": "versioned", "model_version_policy": {"specific": {"versions": [1, 3]}}},
    "all": {"base_path": "versioned", "model_version_policy": {"all": {}}},
    "single_file": {"base_path": "versioned/2/model.xml"},
    "onnx": {"base_path": "scale"},
    "onnx_file": {"base_path": "scale/1/model.onnx"},
    "shaped": {"base_path": "dynamic", "shape": "(2,3)"},
    "ranged": {"base_path": "dynamic", "shape": "(1:4,3)"},
    "per_input": {"base_path": "versioned", "shape": {"x": "(3,4)"}, "batch_size": 7},  # shape wins over batch_size
    "batch5": {"base_path": "versioned", "batch_size": 5},
    "batch_auto": {"base_path": "add", "batch_size": "auto"},
    "shape_auto": {"base_path": "add", "shape": "auto"},
    "weights_free": {"base_path": "add"},
    "tuned": {"base_path": "versioned", "nireq": 3, "plugin_config": {"NUM_STREAMS": 2}},
}
SERVED = {  # name -> versions served under its policy
    "latest_default": [3], "latest2": [2, 3], "specific13": [1, 3], "all": [1, 2, 3], "single_file": [1],
    "batch5": [3], "per_input": [3], "tuned": [3],
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    for version in (1, 2, 3):
        save(versioned_model(version), root / "versioned", version)
    (root / "scale" / "1").mkdir(parents=True)
    onnx.save(scale_onnx_model(), root / "scale" / "1" / "model.onnx")
    save(dynamic_model(), root / "dynamic")
    save(add_model(), root / "add")
    entries = [{"config": {"name": name, **fields}} for name, fields in MODELS.items()]
    (root / "config.json").write_text(json.dumps({"model_config_list": entries}, indent=1))
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess("--config_path", str(repo / "config.json")) as proc:
        yield proc


def infer(server: ServerProcess, path: str, x: np.ndarray, name: str = "x") -> Reply:
    doc = {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    return post_json(server.port, path + "/infer", doc)


def output(reply: Reply, name: str = "y") -> np.ndarray:
    assert reply.status == 200, reply.body
    (out,) = [o for o in reply.json()["outputs"] if o["name"] == name]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def metadata(server: ServerProcess, name: str) -> dict[str, Any]:
    reply = get(server.port, f"/v2/models/{name}")
    assert reply.status == 200, reply.body
    return reply.json()


def input_shapes(server: ServerProcess, name: str) -> dict[str, list[int]]:
    return {i["name"]: i["shape"] for i in metadata(server, name)["inputs"]}


# Versions and policies


@pytest.mark.parametrize("name", sorted(SERVED))
def test_metadata_lists_the_versions_the_policy_serves(server: ServerProcess, name: str) -> None:
    served = SERVED[name]
    assert metadata(server, name)["versions"] == [str(v) for v in served]
    for version in range(1, 5):
        meta = get(server.port, f"/v2/models/{name}/versions/{version}")
        ready = get(server.port, f"/v2/models/{name}/versions/{version}/ready")
        if version in served:
            assert meta.status == 200 and meta.json()["versions"] == [str(v) for v in served]
            assert ready.status == 200
        else:
            assert meta.status == 404 and ready.status == 404, (version, meta.body)


@pytest.mark.parametrize("name", ["latest_default", "latest2", "specific13", "all"])
def test_each_served_version_answers_and_others_do_not(server: ServerProcess, name: str) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    # versions/<v> runs that version; with no version, the latest served one answers
    for version in SERVED[name]:
        reply = infer(server, f"/v2/models/{name}/versions/{version}", x)
        assert reply.json()["model_version"] == str(version)
        np.testing.assert_array_equal(output(reply), x + version)
    np.testing.assert_array_equal(output(infer(server, f"/v2/models/{name}", x)), x + max(SERVED[name]))
    for version in set(range(1, 5)) - set(SERVED[name]):
        reply = infer(server, f"/v2/models/{name}/versions/{version}", x)
        assert reply.status == 404, reply.body
        assert "error" in reply.json()


def test_each_version_is_compiled_once_with_its_own_pool(server: ServerProcess) -> None:
    log = server.log()
    for name in MODELS:
        versions = SERVED.get(name, [1])
        for version in versions:
            lines = re.findall(rf"loaded model {name} version {version} on CPU from .*", log)
            assert len(lines) == 1, (name, version, lines)
            assert "inputs " in lines[0] and "nireq " in lines[0]
        assert not re.search(rf"loaded model {name} version (?!({'|'.join(map(str, versions))}) )", log), name
    (tuned,) = re.findall(r"loaded model tuned version 3 .*", log)
    assert "nireq 3" in tuned


# Model formats and base_path forms


def test_onnx_model_is_served(server: ServerProcess, repo: Path) -> None:
    assert (repo / "scale" / "1" / "model.onnx").is_file() and not list((repo / "scale").rglob("*.xml"))
    meta = metadata(server, "onnx")
    assert meta["versions"] == ["1"] and meta["platform"] == "OpenVINO"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    x = np.array([[1, 1, 1], [2, -1, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(output(infer(server, "/v2/models/onnx", x)), x * np.array(ONNX_SCALE, np.float32))


def test_a_model_file_as_base_path_is_version_1(server: ServerProcess) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    reply = infer(server, "/v2/models/single_file/versions/1", x)
    assert reply.json()["model_version"] == "1"
    np.testing.assert_array_equal(output(reply), x + 2)  # the file is versioned/2/model.xml
    assert metadata(server, "onnx_file")["versions"] == ["1"]
    np.testing.assert_allclose(output(infer(server, "/v2/models/onnx_file", np.ones((1, 3), np.float32))),
                               [ONNX_SCALE])


def test_weights_free_model_with_an_empty_bin(server: ServerProcess, repo: Path) -> None:
    assert (repo / "add" / "1" / "model.bin").stat().st_size == 0  # add has no constants: no weights at all
    a, b = np.arange(10, dtype=np.float32).reshape(1, 10), np.full((1, 10), 2, np.float32)
    doc = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": a.ravel().tolist()},
                      {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": b.ravel().tolist()}]}
    reply = post_json(server.port, "/v2/models/weights_free/infer", doc)
    np.testing.assert_array_equal(output(reply, "sum"), a + b)


# shape and batch_size


def test_shape_and_batch_size_reshape_the_model(server: ServerProcess) -> None:
    assert input_shapes(server, "shaped") == {"x": [2, 3]}
    assert input_shapes(server, "ranged") == {"x": [-1, 3]}  # a range is reported as -1, as OVMS does
    assert input_shapes(server, "per_input") == {"x": [3, 4]}
    assert input_shapes(server, "batch5") == {"x": [5, 4]}
    assert input_shapes(server, "batch_auto") == {"a": [-1, 10], "b": [-1, 10]}
    assert input_shapes(server, "shape_auto") == {"a": [-1, -1], "b": [-1, -1]}
    assert {o["name"]: o["shape"] for o in metadata(server, "batch5")["outputs"]} == {"y": [5, 4]}


def test_reshaped_models_take_only_their_shape(server: ServerProcess) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(output(infer(server, "/v2/models/shaped", x)), x * 2)
    assert infer(server, "/v2/models/shaped", np.ones((1, 3), np.float32)).status == 400
    assert infer(server, "/v2/models/shaped", np.ones((2, 4), np.float32)).status == 400
    np.testing.assert_array_equal(output(infer(server, "/v2/models/ranged", np.ones((4, 3), np.float32))), 2)
    assert infer(server, "/v2/models/ranged", np.ones((5, 3), np.float32)).status == 400
    np.testing.assert_array_equal(output(infer(server, "/v2/models/batch5", np.zeros((5, 4), np.float32))), 3)
    assert infer(server, "/v2/models/batch5", np.zeros((1, 4), np.float32)).status == 400
    dims = {"a": (3, 10), "b": (3, 10)}
    doc = {"inputs": [{"name": n, "shape": list(s), "datatype": "FP32", "data": [1.0] * 30} for n, s in dims.items()]}
    for name in ("batch_auto", "shape_auto"):
        np.testing.assert_array_equal(output(post_json(server.port, f"/v2/models/{name}/infer", doc), "sum"), 2)


# loader.py in-process: plugin_config reaches the compiled model; load errors name the model


@pytest.fixture(scope="module")
def core() -> ov.Core:
    return ov.Core()


def load(core: ov.Core, repo: Path, base: str, **fields: Any) -> Any:
    where = "cfg.json: model_config_list[0].config"
    settings = model_from_dict({"name": "m", "base_path": base, **fields}, repo, where)
    ((version, model_file),) = select_versions(settings).items()
    return load_version(core, settings, version, model_file)


@pytest.mark.parametrize(("plugin_config", "expected"), [
    ({}, {"PERFORMANCE_HINT": "LATENCY"}),  # OVMS's default when neither hint nor streams are given
    ({"NUM_STREAMS": 2}, {"NUM_STREAMS": min(2, CPUS)}),  # OpenVINO caps streams at the CPUs it may use
    ({"NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": 1}, {"NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1}),  # capped
    ({"PERFORMANCE_HINT": "THROUGHPUT"}, {"PERFORMANCE_HINT": "THROUGHPUT"}),
    ({"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}, {"ENABLE_CPU_PINNING": False}),
    ({"ENABLE_CPU_PINNING": True, "PERFORMANCE_HINT": "THROUGHPUT"}, {"ENABLE_CPU_PINNING": True}),
])
def test_plugin_config_is_applied_to_the_compiled_model(core: ov.Core, repo: Path, plugin_config: dict,
                                                        expected: dict) -> None:
    servable = load(core, repo, "add", plugin_config=plugin_config)
    for key, value in expected.items():
        assert str(servable.compiled.get_property(key)) == str(value), key


def test_nireq_sets_the_pool_size(core: ov.Core, repo: Path) -> None:
    servable = load(core, repo, "add", nireq=5)
    assert servable.nireq == 5 and servable.pool.size == 5
    default = load(core, repo, "add", plugin_config={"PERFORMANCE_HINT": "THROUGHPUT"})
    assert default.nireq == max(2, int(default.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))


@pytest.mark.parametrize(("plugin_config", "reason"), [
    ({"NO_SUCH_PROPERTY": 1}, "Unsupported property NO_SUCH_PROPERTY"),
    ({"NUM_STREAMS": "many"}, "number of streams"),
    ({"PERFORMANCE_HINT": "FAST"}, "PERFORMANCE_HINT"),
])
def test_bad_plugin_property_names_model_and_field(core: ov.Core, repo: Path, plugin_config: dict,
                                                   reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(core, repo, "add", plugin_config=plugin_config)
    message = str(info.value)
    assert message.startswith("model m version 1: cannot compile") and reason in message
    assert "cfg.json: model_config_list[0].config.plugin_config" in message


def test_loader_accepts_empty_and_missing_bin(core: ov.Core, tmp_path: Path) -> None:
    folder = save(add_model(), tmp_path / "add")
    assert (folder / "model.bin").stat().st_size == 0
    assert set(load(core, tmp_path, "add").inputs) == {"a", "b"}
    (folder / "model.bin").unlink()
    assert set(load(core, tmp_path, "add").inputs) == {"a", "b"}


def test_corrupt_model_names_the_model(core: ov.Core, tmp_path: Path) -> None:
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "model.xml").write_text("<net><layers>")
    with pytest.raises(ConfigError, match=r"^model m version 1: cannot read .*bad/1/model.xml: "):
        load(core, tmp_path, "bad")
    (tmp_path / "bad" / "1" / "model.xml").unlink()
    (tmp_path / "bad" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ConfigError, match=r"^model m version 1: cannot read .*bad/1/model.onnx: "):
        load(core, tmp_path, "bad")


@pytest.mark.parametrize(("base", "fields", "message"), [
    ("versioned/1/model.xml", {"shape": "(1,2,3)"}, "shape: (1,2,3) has 3 dims, but input x of model m has 2"),
    ("versioned/1/model.xml", {"shape": {"y": "(1,4)"}}, "shape: model m has no input 'y' (inputs: x)"),
    ("scale", {"shape": "(2,5)"}, "shape: model m cannot be reshaped to (2,5)"),  # x * [1,2,3] needs 3 columns
    ("versioned/1/model.xml", {"layout": "NCHW"}, "layout:"),
])
def test_reshape_errors_name_the_field(core: ov.Core, repo: Path, base: str, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(core, repo, base, **fields)
    assert str(info.value).startswith("cfg.json: model_config_list[0].config." + message), str(info.value)


def test_batch_size_follows_the_layout(core: ov.Core, repo: Path) -> None:
    # "CN" puts the batch in the second dimension: batch_size sets that one.
    servable = load(core, repo, "dynamic", layout="CN", batch_size=3)
    assert servable.inputs["x"].metadata_shape == [-1, 3]
    assert load(core, repo, "dynamic", batch_size=3).inputs["x"].metadata_shape == [3, -1]


def test_cli_models_load_the_same_way(core: ov.Core, repo: Path) -> None:
    settings = ModelSettings(name="cli", base_path=repo / "scale", shape="(9,9)")
    ((version, model_file),) = select_versions(settings).items()
    with pytest.raises(ConfigError, match=r"^--shape: model cli cannot be reshaped to \(9,9\)"):
        load_version(core, settings, version, model_file)
