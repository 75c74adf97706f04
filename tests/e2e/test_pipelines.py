"""DAG pipelines end to end: one real server on a repository of models built here, every result
checked against the same computation done directly with OpenVINO (and the shipped custom nodes).

Pipelines: a two-model chain, a diamond (two branches joined), detection -> crop (Python custom
node, dynamic demultiply) -> classifier -> top-k with the response gathering, the same with an
explicit gather_from_node, 5-D images (the request demultiplexed), and a failing node. Config
errors are separate server processes that must exit with code 2 and name pipeline and node.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest
from PIL import Image

from fastserve.custom_nodes import argmax, image_crop
from tests.cpus import needs_two_cpus
from tests.modelzoo import add_model, dynamic_model, failing_model, save
from tests.rawhttp import Conn, get, post_json
from tests.serverproc import ServerProcess

WAIT = 60.0
CROP = {"target_image_width": "8", "target_image_height": "8", "confidence_threshold": "0.5"}
WEIGHTS = np.random.default_rng(0).standard_normal((3 * 8 * 8, 5)).astype(np.float32)


def _param(name: str, shape: list[int]) -> ov.Output:
    out = ops.parameter(ov.PartialShape(shape), ov.Type.f32, name=name).output(0)
    out.get_tensor().set_names({name})
    return out


def _named(node: Any, name: str) -> ov.Output:
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def _i64(values: list[int]) -> ov.Output:
    return ops.constant(np.array(values, dtype=np.int64)).output(0)


def scale_model() -> ov.Model:
    """x FP32 [1,10] -> y = 2x + 1."""
    x = _param("x", [1, 10])
    y = _named(ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1))), "y")
    return ov.Model([y], [x.get_node()], "scale")


def detector_model() -> ov.Model:
    """image FP32 [1,3,32,32] -> detection [1,1,8,7]: rows 0-7, columns 0-6 of channel 0 (boxes the client wrote)."""
    image = _param("image", [1, 3, 32, 32])
    rows = ops.slice(image, _i64([0, 0, 0, 0]), _i64([1, 1, 8, 7]), _i64([1, 1, 1, 1]))
    detection = _named(ops.multiply(rows, ops.constant(np.float32(1))), "detection")
    return ov.Model([detection], [image.get_node()], "detector")


def classifier_model() -> ov.Model:
    """crop FP32 [1,3,8,8] -> scores [1,5] = flatten(crop) @ WEIGHTS."""
    crop = _param("crop", [1, 3, 8, 8])
    flat = ops.reshape(crop, _i64([1, 192]), special_zero=False)
    scores = _named(ops.matmul(flat, ops.constant(WEIGHTS), False, False), "scores")
    return ov.Model([scores], [crop.get_node()], "classifier")


def color_model() -> ov.Model:
    """image FP32 [1,8,8,3] (NHWC) -> mean [1,3]: the mean of each channel."""
    image = _param("image", [1, 8, 8, 3])
    mean = _named(ops.reduce_mean(image, _i64([1, 2]), keep_dims=False), "mean")
    return ov.Model([mean], [image.get_node()], "color")


MODELS = {"scale": scale_model, "add": add_model, "double": dynamic_model, "detector": detector_model,
          "classifier": classifier_model, "color": color_model, "failing": failing_model}


def src(node: str, item: str) -> dict[str, dict[str, str]]:
    return {"node_name": node, "data_item": item}


def node(name: str, inputs: dict[str, dict], outputs: dict[str, str], model: str | None = None,
         library: str | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "type": "DL model" if model else "custom"}
    found.update({"model_name": model} if model else {"library_name": library})
    found["inputs"] = [{k: v} for k, v in inputs.items()]
    found["outputs"] = [{"data_item": k, "alias": v} for k, v in outputs.items()]
    return {**found, **extra}


def pipeline(name: str, inputs: list[str], nodes: list[dict], outputs: dict[str, dict], **extra: Any) -> dict:
    return {"name": name, "inputs": inputs, "nodes": nodes, "outputs": [{k: v} for k, v in outputs.items()], **extra}


def crop_nodes(**classify: Any) -> list[dict]:
    return [
        node("detect", {"image": src("request", "image")}, {"detection": "detection"}, model="detector"),
        node("crop", {"image": src("request", "image"), "detection": src("detect", "detection")},
             {"images": "crops", "coordinates": "boxes", "confidences": "confidences"}, library="crop",
             params=CROP, demultiply_count=-1),
        node("classify", {"crop": src("crop", "crops")}, {"scores": "scores"}, model="classifier"),
        node("top", {"scores": src("classify", "scores")}, {"indices": "label"}, library="topk", **classify),
    ]


PIPELINES = [
    pipeline("chain", ["in"], [
        node("s", {"x": src("request", "in")}, {"y": "scaled"}, model="scale"),
        node("a", {"a": src("s", "scaled"), "b": src("request", "in")}, {"sum": "sum"}, model="add"),
    ], {"total": src("a", "sum"), "scaled": src("s", "scaled")}),
    pipeline("diamond", ["in"], [
        node("left", {"x": src("request", "in")}, {"y": "y"}, model="scale"),
        node("right", {"x": src("request", "in")}, {"y": "y"}, model="double"),
        node("join", {"a": src("left", "y"), "b": src("right", "y")}, {"sum": "sum", "diff": "diff"}, model="add"),
    ], {"sum": src("join", "sum"), "diff": src("join", "diff")}),
    pipeline("detect_classify", ["image"], crop_nodes(), {
        "scores": src("classify", "scores"), "label": src("top", "label"),
        "boxes": src("crop", "boxes"), "confidences": src("crop", "confidences")}),
    pipeline("detect_vote", ["image"], crop_nodes(gather_from_node="crop"), {
        "label": src("top", "label"), "detection": src("detect", "detection")}),
    pipeline("one_color", ["image"], [node("c", {"image": src("request", "image")}, {"mean": "mean"}, model="color")],
             {"mean": src("c", "mean")}),
    pipeline("colors", ["images"], [node("c", {"image": src("request", "images")}, {"mean": "mean"}, model="color")],
             {"means": src("c", "mean")}, demultiply_count=-1),
    pipeline("broken", ["x", "shape"], [
        node("reshaper", {"x": src("request", "x"), "shape": src("request", "shape")}, {"y": "y"}, model="failing"),
    ], {"y": src("reshaper", "y")}),
]
LIBRARIES = [{"name": "crop", "base_path": "fastserve.custom_nodes.image_crop"},
             {"name": "topk", "base_path": str(Path(argmax.__file__))}]  # one by module name, one by file


def write_config(root: Path, pipelines: list[dict], models: dict = MODELS, **extra: Any) -> Path:
    for name, build in models.items():
        if not (root / name).exists():
            save(build(), root / name)
    doc = {"model_config_list": [{"config": {"name": n, "base_path": n}} for n in models],
           "custom_node_library_config_list": LIBRARIES, "pipeline_config_list": pipelines, **extra}
    path = root / "config.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = write_config(tmp_path_factory.mktemp("pipelines"), PIPELINES)
    with ServerProcess("--config_path", str(config), ready_timeout=WAIT) as proc:
        yield proc


@pytest.fixture(scope="module")
def direct() -> dict[str, ov.CompiledModel]:
    core = ov.Core()
    return {name: core.compile_model(build(), "CPU") for name, build in MODELS.items()}


def run(compiled: ov.CompiledModel, *inputs: np.ndarray) -> list[np.ndarray]:
    result = compiled(list(inputs))
    return [result[port] for port in compiled.outputs]


def outputs(reply: Any) -> dict[str, np.ndarray]:
    assert reply.status == 200, reply.body
    return {o["name"]: np.array(o["data"], dtype=np.float32).reshape(o["shape"]) for o in reply.json()["outputs"]}


def fp32(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1).tolist()}


# Chains and joins


def test_chain_matches_the_two_models_run_directly(server: ServerProcess, direct: dict) -> None:
    x = np.linspace(-2, 2, 10, dtype=np.float32).reshape(1, 10)
    (scaled,) = run(direct["scale"], x)
    total, _ = run(direct["add"], scaled, x)  # add's outputs in port order: sum, diff
    got = outputs(post_json(server.port, "/v2/models/chain/infer", {"id": "7", "inputs": [fp32("in", x)]}))
    np.testing.assert_allclose(got["scaled"], scaled, rtol=1e-6)
    np.testing.assert_allclose(got["total"], total, rtol=1e-6)


def test_diamond_joins_both_branches(server: ServerProcess, direct: dict) -> None:
    x = np.arange(10, dtype=np.float32).reshape(1, 10) - 4.5
    (left,) = run(direct["scale"], x)
    (right,) = run(direct["double"], x)
    got = outputs(post_json(server.port, "/v2/models/diamond/infer", {"inputs": [fp32("in", x)]}))
    np.testing.assert_allclose(got["sum"], left + right, rtol=1e-6)
    np.testing.assert_allclose(got["diff"], left - right, rtol=1e-6)


def test_binary_input_and_output(server: ServerProcess) -> None:
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    head = json.dumps({"inputs": [{"name": "in", "shape": [1, 10], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 40}}],
                       "outputs": [{"name": "total", "parameters": {"binary_data": True}}]}).encode()
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/chain/infer", head + x.tobytes(),
                             {"Inference-Header-Content-Length": str(len(head))})
    assert reply.status == 200, reply.body
    length = int(reply.headers["inference-header-content-length"])
    doc = json.loads(reply.body[:length])
    assert [o["name"] for o in doc["outputs"]] == ["total"]
    assert doc["model_name"] == "chain" and doc["model_version"] == "1"
    np.testing.assert_array_equal(np.frombuffer(reply.body[length:], np.float32), (3 * x + 1).reshape(-1))


def test_request_errors_as_for_a_model(server: ServerProcess) -> None:
    reply = post_json(server.port, "/v2/models/chain/infer", {"inputs": [fp32("in", np.zeros((1, 9), np.float32))]})
    assert reply.status == 400
    assert reply.json()["error"] == "Invalid input shape - Expected: (1,10); Actual: (1,9); input name: in"
    reply = post_json(server.port, "/v2/models/chain/infer", {"inputs": [fp32("x", np.zeros((1, 10), np.float32))]})
    assert reply.status == 400 and "Missing input with specific name - Required input: in" in reply.json()["error"]
    body = {"inputs": [fp32("in", np.zeros((1, 10), np.float32))], "outputs": [{"name": "sum"}]}
    reply = post_json(server.port, "/v2/models/chain/infer", body)
    assert reply.status == 400
    assert reply.json()["error"] == "Unknown output name: sum (the model's outputs are: scaled, total)"


@needs_two_cpus
def test_failing_node_is_named(server: ServerProcess) -> None:
    body = {"inputs": [fp32("x", np.arange(6, dtype=np.float32)),
                       {"name": "shape", "shape": [2], "datatype": "INT64", "data": [4, 4]}]}
    reply = post_json(server.port, "/v2/models/broken/infer", body)
    assert reply.status == 500
    assert reply.json()["error"].startswith("Pipeline broken: node reshaper: Internal inference error")
    body["inputs"][1]["data"] = [2, 3]
    np.testing.assert_array_equal(outputs(post_json(server.port, "/v2/models/broken/infer", body))["y"],
                                  np.arange(6, dtype=np.float32).reshape(2, 3))


# Demultiplexing


def detection_image(boxes: list[tuple[float, float, float, float, float]]) -> np.ndarray:
    """A [1,3,32,32] image whose channel 0 rows 0-7 carry detections (confidence, x0, y0, x1, y1) for detector."""
    image = np.random.default_rng(len(boxes)).random((1, 3, 32, 32), dtype=np.float32)
    rows = np.zeros((8, 7), np.float32)
    rows[:, 0] = -1  # image_id -1 ends the list
    for row, (confidence, *coords) in enumerate(boxes):
        rows[row] = [0, row, confidence, *coords]
    image[0, 0, :8, :7] = rows
    return image


def expected_crops(direct: dict, image: np.ndarray) -> dict[str, np.ndarray]:
    (detection,) = run(direct["detector"], image)
    crops = image_crop.execute({"image": image, "detection": detection}, CROP)
    scores = np.stack([run(direct["classifier"], crop)[0] for crop in crops["images"]])
    return {"scores": scores, "label": argmax.execute({"scores": scores}, {})["indices"],
            "boxes": crops["coordinates"], "confidences": crops["confidences"], "detection": detection}


BOXES = [(0.9, 0.5, 0.5, 0.75, 0.75), (0.2, 0.0, 0.0, 1.0, 1.0), (0.8, 0.0, 0.25, 0.5, 0.75),
         (0.6, 0.25, 0.25, 0.5, 1.0)]


@pytest.mark.parametrize("count", [1, 3])
def test_dynamic_crops_classified_per_crop(server: ServerProcess, direct: dict, count: int) -> None:
    image = detection_image(BOXES[:count + 1])  # the 0.2-confidence box is always dropped
    expected = expected_crops(direct, image)
    assert len(expected["scores"]) == count
    got = outputs(post_json(server.port, "/v2/models/detect_classify/infer", {"inputs": [fp32("image", image)]}))
    assert got["scores"].shape == (count, 1, 5) and got["label"].shape == (count, 1, 1)
    np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got["label"], expected["label"])
    np.testing.assert_allclose(got["boxes"], expected["boxes"], rtol=1e-6)
    np.testing.assert_allclose(got["confidences"], expected["confidences"], rtol=1e-6)


def test_gather_from_node_before_the_response(server: ServerProcess, direct: dict) -> None:
    image = detection_image(BOXES)
    expected = expected_crops(direct, image)
    got = outputs(post_json(server.port, "/v2/models/detect_vote/infer", {"inputs": [fp32("image", image)]}))
    # top gathers the classifier's [1,5] branches into [3,1,5] before running once: no extra dimension
    np.testing.assert_array_equal(got["label"], expected["label"])
    np.testing.assert_allclose(got["detection"], expected["detection"], rtol=1e-6)


def test_no_detections_answer_204(server: ServerProcess) -> None:
    image = detection_image([(0.1, 0.0, 0.0, 1.0, 1.0)])
    with Conn(server.port) as conn:
        body = json.dumps({"inputs": [fp32("image", image)]}).encode()
        reply = conn.request("POST", "/v2/models/detect_classify/infer", body)
        assert reply.status == 204 and reply.body == b"" and "content-length" not in reply.headers
        again = conn.request("POST", "/v2/models/chain/infer",
                             json.dumps({"inputs": [fp32("in", np.zeros((1, 10), np.float32))]}).encode())
        assert again.status == 200  # the connection stays usable


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def binary_images(pictures: list[np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """PNG bytes are not UTF-8 text: they go with the binary extension, length-prefixed."""
    encoded = [png(p) for p in pictures]
    raw = b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    head = json.dumps({"inputs": [{"name": "image" if len(pictures) == 1 else "images", "shape": [len(pictures)],
                                   "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def test_image_into_a_four_dimensional_input(server: ServerProcess, direct: dict) -> None:
    picture = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/one_color/infer", *binary_images([picture]))
    bgr = picture[..., ::-1].astype(np.float32)[None]  # decoded as OpenCV does: BGR
    np.testing.assert_allclose(outputs(reply)["mean"], run(direct["color"], bgr)[0], rtol=1e-5)


def test_five_dimensional_images_demultiplexed(server: ServerProcess, direct: dict) -> None:
    rng = np.random.default_rng(5)
    pictures = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    with Conn(server.port) as conn:
        reply = conn.request("POST", "/v2/models/colors/infer", *binary_images(pictures))
    got = outputs(reply)["means"]
    assert got.shape == (3, 1, 3)
    for index, picture in enumerate(pictures):
        bgr = picture[..., ::-1].astype(np.float32)[None]  # decoded as OpenCV does: BGR
        np.testing.assert_allclose(got[index], run(direct["color"], bgr)[0], rtol=1e-5)


def test_five_dimensional_tensor_input(server: ServerProcess, direct: dict) -> None:
    x = np.random.default_rng(6).random((2, 1, 8, 8, 3), dtype=np.float32)
    got = outputs(post_json(server.port, "/v2/models/colors/infer", {"inputs": [fp32("images", x)]}))["means"]
    np.testing.assert_allclose(got, np.stack([run(direct["color"], x[i])[0] for i in range(2)]), rtol=1e-5)


# Metadata, readiness, clients


def test_metadata_from_the_definition(server: ServerProcess) -> None:
    reply = get(server.port, "/v2/models/detect_classify")
    assert reply.status == 200
    assert reply.json() == {
        "name": "detect_classify", "versions": ["1"], "platform": "OpenVINO",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 3, 32, 32]}],
        "outputs": [{"name": "boxes", "datatype": "FP32", "shape": [-1, 1, 4]},
                    {"name": "confidences", "datatype": "FP32", "shape": [-1, 1, 1]},
                    {"name": "label", "datatype": "INT32", "shape": [-1]},
                    {"name": "scores", "datatype": "FP32", "shape": [-1, 1, 5]}],
    }
    colors = get(server.port, "/v2/models/colors").json()
    assert colors["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 8, 8, 3]}]
    assert colors["outputs"] == [{"name": "means", "datatype": "FP32", "shape": [-1, 1, 3]}]


def test_ready_and_lookup_order(server: ServerProcess) -> None:
    assert get(server.port, "/v2/models/chain/ready").status == 200
    assert get(server.port, "/v2/models/chain/versions/7/ready").status == 200  # pipelines are not versioned
    assert get(server.port, "/v2/models/scale/ready").status == 200  # models first
    missing = get(server.port, "/v2/models/nothing/ready")
    assert missing.status == 404 and missing.json() == {"error": "Model with requested name is not found"}
    assert get(server.port, "/v2/models/nothing").status == 404
    assert post_json(server.port, "/v2/models/nothing/infer", {"inputs": []}).status == 404


def test_tritonclient_against_a_pipeline(server: ServerProcess) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.host)
    try:
        assert client.is_model_ready("chain")
        assert client.get_model_metadata("chain")["outputs"][1]["name"] == "total"
        x = np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10)
        given = httpclient.InferInput("in", [1, 10], "FP32")
        given.set_data_from_numpy(x, binary_data=True)
        wanted = [httpclient.InferRequestedOutput("total", binary_data=True),
                  httpclient.InferRequestedOutput("scaled", binary_data=False)]
        result = client.infer("chain", [given], outputs=wanted)
        np.testing.assert_allclose(result.as_numpy("total"), 3 * x + 1, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("scaled"), 2 * x + 1, rtol=1e-6)
    finally:
        client.close()


# Configuration errors: each server must refuse to start (exit 2) and say where


def start_and_fail(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "fastserve", "--config_path", str(config), "--rest_port", "0",
                           "--rest_bind_address", "127.0.0.1"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_unknown_model_stops_start_up(tmp_path: Path) -> None:
    bad = pipeline("bad", ["in"], [node("n", {"x": src("request", "in")}, {"y": "y"}, model="nope")],
                   {"y": src("n", "y")})
    log = start_and_fail(write_config(tmp_path, [bad], models={"scale": scale_model}))
    assert "pipeline 'bad': node 'n': model 'nope' is not in model_config_list" in log
    assert "listening on" not in log  # refused before listening


def test_shape_mismatch_stops_start_up(tmp_path: Path) -> None:
    bad = pipeline("bad", ["in"], [
        node("s", {"x": src("request", "in")}, {"y": "y"}, model="scale"),
        node("c", {"crop": src("s", "y")}, {"scores": "scores"}, model="classifier"),
    ], {"scores": src("c", "scores")})
    log = start_and_fail(write_config(tmp_path, [bad], models={"scale": scale_model, "classifier": classifier_model}))
    assert ("pipeline 'bad': node 'c' input 'crop' <- node 's' output 'y': shape mismatch: (1,10) arrives "
            "(after demultiplexing/gathering), (1,3,8,8) is expected") in log
