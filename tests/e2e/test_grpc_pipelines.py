"""DAG pipelines over gRPC: the pipelines of test_pipelines.py on a server that also serves --port.

Each result must be the same bytes REST gives for the same request (both transports run the one
inference core), and the gRPC-only answers are OVMS's: a demultiplexer that finds nothing is
ABORTED (PIPELINE_DEMULTIPLEXER_NO_RESULTS in OVMS's grpc_utils.cpp; REST answers 204), request
errors are INVALID_ARGUMENT with REST's message, and a failing node is INTERNAL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from tests.cpus import needs_two_cpus
from tests.e2e.test_pipelines import BOXES, PIPELINES, detection_image, png, write_config
from tests.grpcstub import Stub, infer_request, output_arrays
from tests.rawhttp import Conn, post_json
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, grpc_transport: str) -> Iterator[ServerProcess]:
    config = write_config(tmp_path_factory.mktemp("grpc_pipelines"), PIPELINES)
    with ServerProcess("--config_path", str(config), ready_timeout=60.0, grpc=True,
                       grpc_transport=grpc_transport) as proc:
        yield proc


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[Stub]:
    found = Stub(server.grpc_host)
    yield found
    found.close()


def rest_binary(port: int, pipeline: str, name: str, array: np.ndarray) -> dict[str, bytes]:
    """REST with binary outputs: {output name: raw bytes}, for byte-for-byte comparison."""
    head = json.dumps({"inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": array.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    with Conn(port) as conn:
        reply = conn.request("POST", f"/v2/models/{pipeline}/infer", head + array.tobytes(),
                             {"Inference-Header-Content-Length": str(len(head))})
    assert reply.status == 200, reply.body
    length = int(reply.headers["inference-header-content-length"])
    found, offset = {}, length
    for out in json.loads(reply.body[:length])["outputs"]:
        size = out["parameters"]["binary_data_size"]
        found[out["name"]] = reply.body[offset:offset + size]
        offset += size
    return found


def grpc_raw(stub: Stub, pipeline: str, name: str, array: np.ndarray) -> tuple[dict[str, bytes], object]:
    response = stub.call("ModelInfer", infer_request(pipeline, {name: ("FP32", array)}, request_id="p-1"))
    return dict(zip((o.name for o in response.outputs), response.raw_output_contents, strict=True)), response


def test_chain_over_grpc_is_byte_identical_to_rest(server: ServerProcess, stub: Stub) -> None:
    x = np.linspace(-2, 2, 10, dtype=np.float32).reshape(1, 10)
    got, response = grpc_raw(stub, "chain", "in", x)
    assert response.model_name == "chain" and response.model_version == "1" and response.id == "p-1"
    np.testing.assert_allclose(np.frombuffer(got["total"], np.float32), (3 * x + 1).reshape(-1), rtol=1e-6)
    assert got == rest_binary(server.port, "chain", "in", x)


@pytest.mark.parametrize("count", [1, 3])
def test_demultiplexed_crops_over_grpc_match_rest(server: ServerProcess, stub: Stub, count: int) -> None:
    image = detection_image(BOXES[:count + 1])  # the 0.2-confidence box is always dropped
    got, response = grpc_raw(stub, "detect_classify", "image", image)
    shapes = {o.name: list(o.shape) for o in response.outputs}
    assert shapes["scores"] == [count, 1, 5] and shapes["label"] == [count, 1, 1]
    assert got == rest_binary(server.port, "detect_classify", "image", image)


def test_no_detections_is_aborted_and_the_channel_stays_usable(server: ServerProcess, stub: Stub) -> None:
    image = detection_image([(0.1, 0.0, 0.0, 1.0, 1.0)])
    code, message = stub.status("ModelInfer", infer_request("detect_classify", {"image": ("FP32", image)}))
    assert code == grpc.StatusCode.ABORTED and message, message
    reply = post_json(server.port, "/v2/models/detect_classify/infer", {"inputs": [{
        "name": "image", "shape": list(image.shape), "datatype": "FP32", "data": image.reshape(-1).tolist()}]})
    assert reply.status == 204  # the same no-results outcome, as REST answers it
    x = np.zeros((1, 10), np.float32)
    assert grpc_raw(stub, "chain", "in", x)[0]["total"] == np.ones(10, np.float32).tobytes()


def test_png_into_a_four_dimensional_pipeline_input(server: ServerProcess, stub: Stub) -> None:
    picture = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    request = infer_request("one_color", {"image": ("BYTES", np.array([png(picture)], dtype=np.object_))})
    means = output_arrays(stub.call("ModelInfer", request))["mean"]
    bgr = picture[..., ::-1].astype(np.float32)  # decoded as OpenCV does: BGR
    np.testing.assert_allclose(means.reshape(-1), bgr.mean(axis=(0, 1)), rtol=1e-5)


def test_five_dimensional_images_demultiplexed_over_grpc(stub: Stub) -> None:
    rng = np.random.default_rng(5)
    pictures = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    request = infer_request("colors", {"images": ("BYTES", np.array([png(p) for p in pictures], dtype=np.object_))})
    means = output_arrays(stub.call("ModelInfer", request))["means"]
    assert means.shape == (3, 1, 3)
    for index, picture in enumerate(pictures):
        np.testing.assert_allclose(means[index, 0], picture[..., ::-1].astype(np.float32).mean(axis=(0, 1)), rtol=1e-5)


def test_request_errors_are_invalid_argument_with_rest_messages(stub: Stub) -> None:
    code, message = stub.status("ModelInfer", infer_request("chain", {"in": ("FP32", np.zeros((1, 9), np.float32))}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "Invalid input shape - Expected: (1,10); Actual: (1,9); input name: in"
    code, message = stub.status("ModelInfer", infer_request("chain", {"x": ("FP32", np.zeros((1, 10), np.float32))}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing input with specific name - Required input: in" in message
    request = infer_request("chain", {"in": ("FP32", np.zeros((1, 10), np.float32))}, outputs=["sum"])
    code, message = stub.status("ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "Unknown output name: sum (the model's outputs are: scaled, total)"


def test_pipeline_metadata_and_readiness_over_grpc(stub: Stub) -> None:
    from fastserve.grpc.proto import inference_pb2 as pb

    assert stub.call("ModelReady", pb.ModelReadyRequest(name="chain")).ready
    metadata = stub.call("ModelMetadata", pb.ModelMetadataRequest(name="chain"))
    assert [t.name for t in metadata.inputs] == ["in"]
    assert sorted(t.name for t in metadata.outputs) == ["scaled", "total"]


@needs_two_cpus
def test_failing_node_is_internal_and_named(stub: Stub) -> None:
    request = infer_request("broken", {"x": ("FP32", np.arange(6, dtype=np.float32)),
                                       "shape": ("INT64", np.array([4, 4], np.int64))})
    code, message = stub.status("ModelInfer", request)
    assert code == grpc.StatusCode.INTERNAL
    assert message.startswith("Pipeline broken: node reshaper: Internal inference error"), message
