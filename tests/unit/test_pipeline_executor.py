"""The pipeline executor on real OpenVINO servables, without HTTP: zero-copy hand-offs, slot
release, no deadlock when branches outnumber infer requests, failures naming the node, the
0-result abort, and re-binding when models change (what hot reload relies on).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest

from fastserve.errors import ConfigError, FastServeError, ModelNotFound, NotFound, Unavailable
from fastserve.models.servable import Servable
from fastserve.pipelines.config import parse_pipelines
from fastserve.pipelines.executor import NoResults, PipelineResult, run_pipeline
from fastserve.pipelines.registry import ServedPipeline, build_registry, rebuild_pipelines

CONFIG = Path("/models/config.json")


def _scale_model(width: int, factor: float) -> ov.Model:
    """x FP32 [-1,width] -> y = x * factor."""
    x = ops.parameter(ov.PartialShape([-1, width]), ov.Type.f32, name="x").output(0)
    x.get_tensor().set_names({"x"})
    y = ops.multiply(x, ops.constant(np.float32(factor))).output(0)
    y.get_tensor().set_names({"y"})
    return ov.Model([y], [x.get_node()], "scale")


@pytest.fixture(scope="module")
def core() -> ov.Core:
    return ov.Core()


def servable(core: ov.Core, mode: str, width: int = 4, factor: float = 2.0, nireq: int = 2) -> Servable:
    return Servable("scale", 1, core.compile_model(_scale_model(width, factor), "CPU"), nireq, mode)


class Repo:
    """What the registry reads of a Repository: get(name, version) and the model names."""

    def __init__(self, models: dict[str, Any]) -> None:
        self.models = models

    def get(self, name: str, version: int | None) -> Any:
        found = self.models.get(name)
        if found is None:
            raise ModelNotFound()
        if isinstance(found, FastServeError):
            raise found
        return found


def node(name: str, source: str, item: str, **extra: Any) -> dict:
    return {"name": name, "type": "DL model", "model_name": "m", "inputs": [{"x": {"node_name": source,
            "data_item": item}}], "outputs": [{"data_item": "y", "alias": "y"}], **extra}


def doc(nodes: list[dict], last: str, libraries: list[dict] | None = None, **extra: Any) -> dict:
    pipeline = {"name": "p", "inputs": ["in"], "nodes": nodes,
                "outputs": [{"out": {"node_name": last, "data_item": "y"}}], **extra}
    return {"pipeline_config_list": [pipeline], "custom_node_library_config_list": libraries or []}


def bind(document: dict, model: Any) -> tuple[Any, ServedPipeline]:
    registry = build_registry(parse_pipelines(document, CONFIG, {"m"}))
    pipeline = registry.get("p")
    assert pipeline is not None
    return pipeline.resolve(Repo({"m": model})), pipeline


async def execute(compiled: Any, x: np.ndarray) -> PipelineResult:
    result = run_pipeline(compiled, [x], [0])
    if not isinstance(result, PipelineResult):
        result = await asyncio.wait_for(result, 10)
    return result


CHAIN = doc([node("a", "request", "in"), node("b", "a", "y"), node("c", "b", "y")], "c")


def test_inline_chain_runs_synchronously_and_hands_views_on(core: ov.Core) -> None:
    model = servable(core, "inline")
    compiled, _ = bind(CHAIN, model)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = run_pipeline(compiled, [x], [0])
    assert isinstance(result, PipelineResult)  # every node inline: no task, no future
    np.testing.assert_array_equal(result.arrays[0], x * 8)
    # The same model three times over two infer requests: a and b were released as soon as read,
    # c's output is a view of its infer request's memory, held until the response is sent.
    assert model.pool.busy == 1
    assert not result.arrays[0].flags.owndata
    result.release()
    assert model.pool.busy == 0


def test_async_chains_never_deadlock_on_shared_slots(core: ov.Core) -> None:
    model = servable(core, "async")
    compiled, _ = bind(CHAIN, model)

    async def sent(x: np.ndarray) -> np.ndarray:
        result = await execute(compiled, x)
        out = result.arrays[0].copy()
        result.release()  # as the server does once the response is written
        return out

    async def many() -> list[np.ndarray]:
        return await asyncio.gather(*(sent(np.full((1, 4), i, np.float32)) for i in range(12)))

    for i, out in enumerate(asyncio.run(asyncio.wait_for(many(), 20))):
        np.testing.assert_array_equal(out, np.full((1, 4), i * 8, np.float32))
    assert model.pool.busy == 0


def test_demultiplexed_branches_outnumber_infer_requests(core: ov.Core) -> None:
    """8 branches through a model with 2 infer requests, gathered by the response."""
    model = servable(core, "async")
    compiled, _ = bind(doc([node("a", "request", "in"), node("b", "a", "y")], "b", demultiply_count=-1), model)
    x = np.arange(8 * 3 * 4, dtype=np.float32).reshape(8, 3, 4)
    result = asyncio.run(execute(compiled, x))
    assert result.arrays[0].shape == (8, 3, 4)
    np.testing.assert_array_equal(result.arrays[0], x * 4)
    result.release()
    assert model.pool.busy == 0


def test_request_demultiplexing_with_a_fixed_count(core: ov.Core) -> None:
    model = servable(core, "inline")
    compiled, _ = bind(doc([node("a", "request", "in")], "a", demultiply_count=3), model)
    x = np.ones((3, 1, 4), np.float32)
    result = asyncio.run(execute(compiled, x))
    np.testing.assert_array_equal(result.arrays[0], x * 2)
    result.release()
    with pytest.raises(FastServeError, match="Pipeline p: the request: demultiply_count is 3 but the first "
                                             "dimension is 2") as caught:
        run_pipeline(compiled, [np.ones((2, 1, 4), np.float32)], [0])
    assert caught.value.status == 400


def write(tmp_path: Path, body: str) -> list[dict]:
    path = tmp_path / "node.py"
    path.write_text("import numpy as np\n"
                    "def inputs_info(params): return {'x': ('FP32', [-1, 4])}\n"
                    "def outputs_info(params): return {'y': ('FP32', [-1, 1, 4])}\n" + body)
    return [{"name": "lib", "base_path": str(path)}]


def custom(name: str, source: str, **extra: Any) -> dict:
    return {"name": name, "type": "custom", "library_name": "lib", "inputs": [{"x": {"node_name": source,
            "data_item": "y"}}], "outputs": [{"data_item": "y", "alias": "y"}], **extra}


def test_custom_node_failure_names_the_node_and_releases_slots(core: ov.Core, tmp_path: Path) -> None:
    libraries = write(tmp_path, "def execute(inputs, params): raise ValueError('no boxes today')\n")
    model = servable(core, "inline")
    compiled, _ = bind(doc([node("a", "request", "in"), custom("c", "a")], "c", libraries), model)
    with pytest.raises(FastServeError) as caught:
        asyncio.run(execute(compiled, np.ones((1, 4), np.float32)))
    assert caught.value.status == 500
    assert caught.value.message == ("Pipeline p: node c: custom node library lib failed: "
                                    "ValueError('no boxes today')")
    assert model.pool.busy == 0


def test_custom_output_must_match_its_declaration(core: ov.Core, tmp_path: Path) -> None:
    libraries = write(tmp_path, "RUN_INLINE = True\n"
                                "def execute(inputs, params): return {'y': inputs['x'].astype(np.float64)[:, None]}\n")
    compiled, _ = bind(doc([node("a", "request", "in"), custom("c", "a")], "c", libraries), servable(core, "inline"))
    with pytest.raises(FastServeError, match="Pipeline p: node c: output 'y' is float64, declared FP32"):
        run_pipeline(compiled, [np.ones((1, 4), np.float32)], [0])


def test_zero_results_abort_the_run(core: ov.Core, tmp_path: Path) -> None:
    libraries = write(tmp_path, "RUN_INLINE = True\n"
                                "def execute(inputs, params): return {'y': np.zeros((0, 1, 4), np.float32)}\n")
    model = servable(core, "inline")
    compiled, _ = bind(doc([node("a", "request", "in"), custom("c", "a", demultiply_count=-1),
                            node("b", "c", "y")], "b", libraries), model)
    with pytest.raises(NoResults) as caught:
        run_pipeline(compiled, [np.ones((1, 4), np.float32)], [0])
    assert caught.value.status == 204
    assert model.pool.busy == 0


def test_custom_node_views_keep_their_source_alive(core: ov.Core, tmp_path: Path) -> None:
    """A custom node that returns a view of its input: the model's memory stays held until sent."""
    libraries = write(tmp_path, "RUN_INLINE = True\n"
                                "def execute(inputs, params): return {'y': inputs['x'][:, None]}\n")
    model = servable(core, "inline")
    compiled, _ = bind(doc([node("a", "request", "in"), custom("c", "a")], "c", libraries), model)
    result = run_pipeline(compiled, [np.ones((1, 4), np.float32)], [0])
    assert isinstance(result, PipelineResult) and model.pool.busy == 1
    np.testing.assert_array_equal(result.arrays[0], np.full((1, 1, 4), 2, np.float32))
    result.release()
    assert model.pool.busy == 0


def test_resolution_follows_the_models(core: ov.Core) -> None:
    """Loading -> 503; gone -> 404 not ready; a new version with other shapes is re-checked; back -> ready."""
    pipeline = build_registry(parse_pipelines(CHAIN, CONFIG, {"m"})).get("p")
    assert pipeline is not None
    repo = Repo({"m": Unavailable("Model with requested version is not loaded yet")})
    with pytest.raises(Unavailable, match="Pipeline is not loaded yet - node a: model m is still loading"):
        pipeline.resolve(repo)
    repo.models = {}
    with pytest.raises(NotFound, match="Pipeline is not loaded yet - node a: model m is not available"):
        pipeline.resolve(repo)
    repo.models = {"m": servable(core, "inline", width=4)}
    first = pipeline.resolve(repo)
    assert pipeline.resolve(repo) is first  # cached while the servables stay the same
    repo.models = {"m": servable(core, "inline", width=5)}
    assert pipeline.resolve(repo) is not first  # a reloaded model: bound again, the new shapes fit too
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x").output(0)
    x.get_tensor().set_names({"x"})
    y = ops.convert(x, ov.Type.i32).output(0)
    y.get_tensor().set_names({"y"})
    repo.models = {"m": Servable("m", 2, core.compile_model(ov.Model([y], [x.get_node()], "int"), "CPU"), 2, "inline")}
    with pytest.raises(NotFound, match="Pipeline is not loaded yet - node 'b' input 'x' <- node 'a' output 'y': "
                                       "datatype mismatch: INT32 arrives, FP32 is expected"):
        pipeline.resolve(repo)
    repo.models = {"m": servable(core, "inline")}
    assert pipeline.resolve(repo) is not first


def test_rebuild_keeps_in_flight_runs_on_their_definition(core: ov.Core) -> None:
    model = servable(core, "inline")
    repo = Repo({"m": model})
    old = rebuild_pipelines(CHAIN, CONFIG, repo, strict=True).get("p")
    assert old is not None
    compiled = old.resolve(repo)
    new = rebuild_pipelines(doc([node("a", "request", "in")], "a"), CONFIG, repo, strict=True).get("p")
    assert new is not None
    x = np.ones((1, 4), np.float32)
    in_flight = run_pipeline(compiled, [x], [0])  # started before the swap
    assert isinstance(in_flight, PipelineResult)
    np.testing.assert_array_equal(in_flight.arrays[0], x * 8)
    in_flight.release()
    after = run_pipeline(new.resolve(repo), [x], [0])
    assert isinstance(after, PipelineResult)
    np.testing.assert_array_equal(after.arrays[0], x * 2)
    after.release()
    with pytest.raises(ConfigError, match="pipeline 'p': node 'a': model 'gone' is not in model_config_list"):
        rebuild_pipelines(doc([{**node("a", "request", "in"), "model_name": "gone"}], "a"), CONFIG, repo)


def any_rank(tmp_path: Path, execute: str) -> list[dict]:
    path = tmp_path / "anyrank.py"
    path.write_text("import numpy as np\nRUN_INLINE = True\n"
                    "def inputs_info(params): return {'x': ('FP32', None)}\n"
                    "def outputs_info(params): return {'y': ('FP32', None)}\n"
                    f"def execute(inputs, params): {execute}\n")
    return [{"name": "lib", "base_path": str(path)}]


def run_custom(document: dict, x: np.ndarray) -> np.ndarray:
    registry = build_registry(parse_pipelines(document, CONFIG, set()))
    pipeline = registry.get("p")
    assert pipeline is not None
    result = run_pipeline(pipeline.resolve(Repo({})), [x], [0])
    assert isinstance(result, PipelineResult)
    out = result.arrays[0].copy()
    result.release()
    return out


def test_nested_demultiplexers_gathered_at_the_response(tmp_path: Path) -> None:
    """The request splits in 2, c1 splits each in 3; the response stacks both levels back: [2,3,...]."""
    libraries = any_rank(tmp_path, "return {'y': inputs['x'] * 10}")
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nodes = [custom("c1", "request", demultiply_count=3), custom("c2", "c1")]
    nodes[0]["inputs"] = [{"x": {"node_name": "request", "data_item": "in"}}]
    np.testing.assert_array_equal(run_custom(doc(nodes, "c2", libraries, demultiply_count=2), x), x * 100)
    nodes[1]["gather_from_node"] = "c1"  # c2 stacks c1's 3 branches and runs once per request branch
    np.testing.assert_array_equal(run_custom(doc(nodes, "c2", libraries, demultiply_count=2), x), x * 100)


def test_branches_of_different_shapes_cannot_be_gathered(tmp_path: Path) -> None:
    libraries = any_rank(tmp_path, "return {'y': np.zeros(int(inputs['x'][0]), np.float32)}")
    nodes = [custom("c", "request")]
    nodes[0]["inputs"] = [{"x": {"node_name": "request", "data_item": "in"}}]
    document = doc(nodes, "c", libraries, demultiply_count=-1)
    np.testing.assert_array_equal(run_custom(document, np.array([[2], [2]], np.float32)), np.zeros((2, 2)))
    with pytest.raises(FastServeError, match=r"Pipeline p: node response: cannot gather input 'out': branches "
                                             r"produced different shapes or types: \[2\] float32 and \[3\] float32"):
        run_custom(document, np.array([[2], [3]], np.float32))
