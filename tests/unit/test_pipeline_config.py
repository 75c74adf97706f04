"""pipeline_config_list parsing and validation: every mistake is a ConfigError naming pipeline and node.

Structural checks (config.py) need no models; tensor checks (graph.py) are run against plain
TensorSpecs, so nothing here loads OpenVINO.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastserve.config import load_config_file, pipelines_from_doc
from fastserve.errors import ConfigError
from fastserve.pipelines.config import DYNAMIC, parse_pipelines
from fastserve.pipelines.graph import compile_pipeline, define
from fastserve.v2.datatypes import BY_NAME
from fastserve.v2.types import TensorSpec

CONFIG = Path("/models/config.json")
MODELS = {"scale", "add", "detect", "classify"}


def spec(name: str, datatype: str, shape: list[int] | None, index: int = 0) -> TensorSpec:
    dims = None if shape is None else tuple((d, d) if d >= 0 else (0, -1) for d in shape)
    return TensorSpec(name, BY_NAME[datatype], BY_NAME[datatype].ov_name, dims, index)


class FakeServable:
    """What graph.py reads of a servable: its input and output TensorSpecs."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.inputs = {s.name: s for s in inputs}
        self.outputs = {s.name: s for s in outputs}


SERVABLES = {
    "scale": FakeServable([spec("x", "FP32", [1, 10])], [spec("y", "FP32", [1, 10])]),
    "add": FakeServable([spec("a", "FP32", [1, 10], 0), spec("b", "FP32", [1, 10], 1)],
                        [spec("diff", "FP32", [1, 10], 0), spec("sum", "FP32", [1, 10], 1)]),
    "detect": FakeServable([spec("image", "FP32", [1, 3, 32, 32])], [spec("boxes", "FP32", [4, 1, 3, 8, 8])]),
    "classify": FakeServable([spec("crop", "FP32", [1, 3, 8, 8])], [spec("scores", "FP32", [1, 5])]),
}


def src(node: str, item: str) -> dict[str, str]:
    return {"node_name": node, "data_item": item}


def dl(name: str, model: str, inputs: dict[str, dict[str, str]], outputs: dict[str, str], **extra: Any) -> dict:
    return {"name": name, "type": "DL model", "model_name": model,
            "inputs": [{k: v} for k, v in inputs.items()],
            "outputs": [{"data_item": k, "alias": v} for k, v in outputs.items()], **extra}


def pipeline(nodes: list[dict], outputs: dict[str, dict[str, str]], inputs: list[str] | None = None,
             name: str = "p", **extra: Any) -> dict:
    return {"name": name, "inputs": inputs or ["in"], "nodes": nodes,
            "outputs": [{k: v} for k, v in outputs.items()], **extra}


def chain() -> dict:
    return pipeline(
        [dl("s", "scale", {"x": src("request", "in")}, {"y": "scaled"}),
         dl("a", "add", {"a": src("s", "scaled"), "b": src("request", "in")}, {"sum": "sum"})],
        {"total": src("a", "sum")},
    )


def parse(*pipelines: dict, libraries: list[dict] | None = None) -> tuple:
    doc: dict[str, Any] = {"pipeline_config_list": list(pipelines)}
    if libraries is not None:
        doc["custom_node_library_config_list"] = libraries
    return parse_pipelines(doc, CONFIG, MODELS)


def compile_one(config: Any) -> Any:
    definition = define(config)
    servables = {n.name: SERVABLES[n.model_name] for n in config.nodes if n.model_name}
    return compile_pipeline(definition, servables)


def error(*pipelines: dict, libraries: list[dict] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        compile_one(parse(*pipelines, libraries=libraries)[0])
    return str(caught.value)


# Structure


def test_chain_parses_in_dependency_order() -> None:
    (config,) = parse(chain())
    assert [n.name for n in config.nodes] == ["s", "a"]
    assert config.inputs == ("in",)
    assert config.response_level == ()


def test_chain_metadata_from_the_connected_models() -> None:
    compiled = compile_one(parse(chain())[0])
    meta = json.loads(compiled.metadata)
    assert meta == {"name": "p", "versions": ["1"], "platform": "OpenVINO",
                    "inputs": [{"name": "in", "datatype": "FP32", "shape": [1, 10]}],
                    "outputs": [{"name": "total", "datatype": "FP32", "shape": [1, 10]}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["nodes"][0].update(model_name="nope"),
         "pipeline 'p': node 's': model 'nope' is not in model_config_list"),
        (lambda p: p.update(name="scale"), "pipeline 'scale': the name is already used by a model"),
        (lambda p: p["nodes"][0].update(name="request"), "node 'request': the names request and response are reserved"),
        (lambda p: p["nodes"][1].update(name="s"), "node 's': duplicate node name"),
        (lambda p: p["nodes"][1]["inputs"][0]["a"].update(node_name="ghost"),
         "node 'a' input 'a': refers to node 'ghost', which is not defined"),
        (lambda p: p["nodes"][0]["inputs"][0]["x"].update(data_item="other"),
         "node 's' input 'x': 'other' is not a pipeline input (inputs: in)"),
        (lambda p: p.update(inputs=["in", "unused"]), "pipeline 'p': input 'unused' is not connected"),
        (lambda p: p["nodes"][0].update(type="python"), "node 's': type: must be \"DL model\" or \"custom\""),
        (lambda p: p["nodes"][0].update(shape="(1,10)"), "node 's': unknown key 'shape'"),
        (lambda p: p["nodes"][0].update(version=0), "node 's': version: must be an integer >= 1"),
        (lambda p: p["nodes"][0].update(demultiply_count=10001), "demultiply_count: must be an integer from -1"),
        (lambda p: p.update(outputs=[]), "pipeline 'p': outputs: required, a non-empty list"),
        (lambda p: p["outputs"].append({"total": src("s", "scaled")}), "outputs: duplicate output 'total'"),
        (lambda p: p["outputs"][0]["total"].update(node_name="response"), "the response node has no outputs"),
        (lambda p: p.update(extra=1), "pipeline 'p': unknown key 'extra'"),
    ],
)
def test_structural_errors_name_pipeline_and_node(change: Any, message: str) -> None:
    doc = chain()
    change(doc)
    with pytest.raises(ConfigError) as caught:
        parse(doc)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(CONFIG))


def test_duplicate_pipeline_names() -> None:
    with pytest.raises(ConfigError, match="pipeline 'p': duplicate pipeline name"):
        parse(chain(), chain())


def test_cycle_is_named() -> None:
    doc = pipeline(
        [dl("a", "scale", {"x": src("b", "y")}, {"y": "y"}), dl("b", "scale", {"x": src("a", "y")}, {"y": "y"})],
        {"out": src("b", "y")},
    )
    doc["inputs"] = ["in"]
    doc["nodes"][0]["inputs"].append({"z": src("request", "in")})
    with pytest.raises(ConfigError, match=r"pipeline 'p': nodes form a cycle: (a -> b -> a|b -> a -> b)"):
        parse(doc)


def test_node_not_leading_to_the_response() -> None:
    doc = chain()
    doc["nodes"].append(dl("lost", "scale", {"x": src("request", "in")}, {"y": "y"}))
    with pytest.raises(ConfigError, match="node 'lost' is not connected to the response"):
        parse(doc)


def test_libraries_must_exist_and_be_python(tmp_path: Path) -> None:
    node = {"name": "c", "type": "custom", "library_name": "lib", "inputs": [{"scores": src("request", "in")}],
            "outputs": [{"data_item": "indices", "alias": "idx"}]}
    doc = pipeline([node], {"out": src("c", "idx")})
    with pytest.raises(ConfigError, match="node 'c': library 'lib' is not in custom_node_library_config_list"):
        parse(doc)
    with pytest.raises(ConfigError, match="is a C library; fastserve's custom nodes are Python modules"):
        parse(doc, libraries=[{"name": "lib", "base_path": "/libs/libcustom_node.so"}])
    with pytest.raises(ConfigError, match=r"library_config_list\[0\].base_path: .*missing.py is not a file"):
        parse(doc, libraries=[{"name": "lib", "base_path": "missing.py"}])
    (config,) = parse(doc, libraries=[{"name": "lib", "base_path": "fastserve.custom_nodes.argmax"}])
    assert config.nodes[0].library is not None and config.nodes[0].library.base_path == "fastserve.custom_nodes.argmax"


def test_config_file_with_pipelines(tmp_path: Path) -> None:
    (tmp_path / "scale").mkdir()
    (tmp_path / "add").mkdir()
    doc = {"model_config_list": [{"config": {"name": "scale", "base_path": "scale"}},
                                 {"config": {"name": "add", "base_path": "add"}}],
           "pipeline_config_list": [chain()]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    models, raw = load_config_file(path)
    (config,) = pipelines_from_doc(raw, path, models)
    assert config.name == "p" and config.where == f"{path}: pipeline 'p'"


# Demultiplexing levels


def demux_doc(**crop: Any) -> dict:
    nodes = [
        dl("detect", "detect", {"image": src("request", "in")}, {"boxes": "boxes"}, demultiply_count=4),
        dl("classify", "classify", {"crop": src("detect", "boxes")}, {"scores": "scores"}),
    ]
    nodes[1].update(crop)
    return pipeline(nodes, {"scores": src("classify", "scores")})


def test_demultiplexed_outputs_gain_the_branch_dimension() -> None:
    (config,) = parse(demux_doc())
    assert config.node("classify").level == ("detect",)
    assert config.response_level == ("detect",)
    meta = json.loads(compile_one(config).metadata)
    assert meta["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [4, 1, 5]}]


def test_gather_from_a_node_that_does_not_demultiply() -> None:
    with pytest.raises(ConfigError, match="node 'classify': gather_from_node 'classify' is a node without"):
        parse(demux_doc(gather_from_node="classify"))
    with pytest.raises(ConfigError, match="gather_from_node 'nowhere' is no node"):
        parse(demux_doc(gather_from_node="nowhere"))


def test_inputs_from_different_levels() -> None:
    doc = demux_doc()
    doc["nodes"].append(dl("join", "add", {"a": src("classify", "scores"), "b": src("request", "in")}, {"sum": "s"}))
    doc["outputs"] = [{"s": src("join", "s")}]
    with pytest.raises(ConfigError, match="node 'join': its inputs come from different demultiplexing levels"):
        parse(doc)


def test_gathers_close_the_innermost_demultiplexer_first() -> None:
    doc = pipeline(
        [dl("outer", "scale", {"x": src("request", "in")}, {"y": "y"}, demultiply_count=2),
         dl("inner", "scale", {"x": src("outer", "y")}, {"y": "y"}, demultiply_count=3),
         dl("late", "scale", {"x": src("inner", "y")}, {"y": "y"}, gather_from_node="outer")],
        {"out": src("late", "y")},
    )
    with pytest.raises(ConfigError, match="node 'late': cannot gather from 'outer' here: its inputs are inside "
                                          "outer > inner; gather the innermost demultiplexer first"):
        parse(doc)


def test_only_one_demultiplexer_with_a_dynamic_count() -> None:
    doc = pipeline(
        [dl("a", "scale", {"x": src("request", "in")}, {"y": "y"}, demultiply_count=-1),
         dl("b", "scale", {"x": src("a", "y")}, {"y": "y"}, demultiply_count=2)],
        {"out": src("b", "y")},
    )
    with pytest.raises(ConfigError, match="a dynamic demultiply_count .* allows only one demultiplexer"):
        parse(doc)


def test_zero_demultiply_count_means_dynamic_as_in_ovms() -> None:
    (config,) = parse(demux_doc())
    doc = demux_doc()
    doc["nodes"][0]["demultiply_count"] = 0
    (config,) = parse(doc)
    assert config.node("detect").demultiply_count == DYNAMIC


# Tensor checks against the models


def test_shape_mismatch_names_both_ends() -> None:
    doc = chain()
    doc["nodes"][0]["model_name"] = "classify"
    doc["nodes"][0]["inputs"] = [{"crop": src("request", "in")}]
    doc["nodes"][0]["outputs"] = [{"data_item": "scores", "alias": "scaled"}]
    message = error(doc)
    assert "pipeline 'p': node 'a' input 'a' <- node 's' output 'scaled': shape mismatch: (1,5) arrives" in message
    assert "(1,10) is expected" in message


def test_datatype_mismatch() -> None:
    SERVABLES["int_scale"] = FakeServable([spec("x", "FP32", [1, 10])], [spec("y", "INT32", [1, 10])])
    MODELS.add("int_scale")
    try:
        doc = chain()
        doc["nodes"][0]["model_name"] = "int_scale"
        assert "node 'a' input 'a' <- node 's' output 'scaled': datatype mismatch: INT32 arrives, FP32 is expected" \
            in error(doc)
    finally:
        MODELS.discard("int_scale")
        del SERVABLES["int_scale"]


def test_model_input_left_unconnected() -> None:
    doc = chain()
    doc["nodes"][1]["inputs"].pop()
    assert "pipeline 'p': node 'a': input 'b' of model 'add' is not connected" in error(doc)


def test_connection_to_a_missing_model_input() -> None:
    doc = chain()
    doc["nodes"][1]["inputs"].append({"c": src("request", "in")})
    assert "node 'a': model 'add' has no input 'c' (its inputs: a, b)" in error(doc)


def test_output_missing_from_the_model() -> None:
    doc = chain()
    doc["nodes"][0]["outputs"] = [{"data_item": "z", "alias": "scaled"}]
    assert "node 's': model 'scale' has no output 'z' (its outputs: y)" in error(doc)


def test_model_output_usable_by_its_own_name() -> None:
    doc = chain()
    doc["nodes"][1]["inputs"][0] = {"a": src("s", "y")}  # not an alias: OVMS falls back to the model's name
    compile_one(parse(doc)[0])


def test_demultiply_count_against_the_first_dimension() -> None:
    doc = demux_doc()
    doc["nodes"][0]["demultiply_count"] = 3
    assert "demultiply_count 3 of node 'detect' does not match the first dimension of (4,1,3,8,8)" in error(doc)


def test_request_input_feeding_incompatible_shapes() -> None:
    doc = pipeline(
        [dl("s", "scale", {"x": src("request", "in")}, {"y": "y"}),
         dl("c", "classify", {"crop": src("request", "in")}, {"scores": "scores"})],
        {"y": src("s", "y"), "scores": src("c", "scores")},
    )
    assert "pipeline input 'in' feeds inputs of incompatible shapes ((1,10) and (1,3,8,8))" in error(doc)


def test_request_demultiplexing_prefixes_the_input_and_output_shapes() -> None:
    doc = pipeline([dl("c", "classify", {"crop": src("request", "in")}, {"scores": "scores"})],
                   {"scores": src("c", "scores"), "echo": src("request", "extra")}, inputs=["in", "extra"],
                   demultiply_count=-1)
    compiled = compile_one(parse(doc)[0])
    meta = json.loads(compiled.metadata)
    assert meta["inputs"] == [{"name": "extra", "datatype": "INVALID", "shape": [-1]},
                              {"name": "in", "datatype": "FP32", "shape": [-1, 1, 3, 8, 8]}]
    assert meta["outputs"][1] == {"name": "scores", "datatype": "FP32", "shape": [-1, 1, 5]}
    assert compiled.passthrough == {"extra"}
    assert compiled.image_specs["in"].dims == ((0, -1), (3, 3), (8, 8), (8, 8))


# Custom libraries


def write_library(tmp_path: Path, body: str) -> list[dict]:
    path = tmp_path / "node.py"
    path.write_text(body)
    return [{"name": "lib", "base_path": str(path)}]


CUSTOM = pipeline([{"name": "c", "type": "custom", "library_name": "lib", "params": {"k": "2"},
                    "inputs": [{"scores": src("request", "in")}],
                    "outputs": [{"data_item": "out", "alias": "out"}]}], {"out": src("c", "out")})

GOOD = """
def inputs_info(params): return {"scores": ("FP32", [1, -1])}
def outputs_info(params): return {"out": ("INT32", [1, int(params["k"])])}
def execute(inputs, params): return {}
"""


def test_custom_library_specs_shape_the_metadata(tmp_path: Path) -> None:
    compiled = compile_one(parse(CUSTOM, libraries=write_library(tmp_path, GOOD))[0])
    meta = json.loads(compiled.metadata)
    assert meta["inputs"] == [{"name": "in", "datatype": "FP32", "shape": [1, -1]}]
    assert meta["outputs"] == [{"name": "out", "datatype": "INT32", "shape": [1, 2]}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("raise RuntimeError('boom')", r"custom node library 'lib' \(/.*node.py\) cannot be imported: RuntimeError"),
        ("def execute(i, p): return {}", "has no function inputs_info, outputs_info"),
        (GOOD.replace('("FP32", [1, -1])', '("FLOAT", [1])'), "inputs_info 'scores': unknown datatype 'FLOAT'"),
        (GOOD.replace('[1, -1]', '"1,2"'), "shape must be a list of ints"),
        (GOOD.replace('params["k"]', 'params["missing"]'), "outputs_info failed: KeyError"),
        (GOOD.replace('"out": ("INT32"', '"other": ("INT32"'),
         r"library 'lib' has no output 'out' \(its outputs: other\)"),
        (GOOD.replace('"scores": ("FP32"', '"logits": ("FP32"'), "library 'lib' has no input 'scores'"),
    ],
)
def test_custom_library_problems(tmp_path: Path, body: str, message: str) -> None:
    libraries = write_library(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as caught:
        compile_one(parse(CUSTOM, libraries=libraries)[0])
    assert "pipeline 'p': node 'c'" in str(caught.value)
