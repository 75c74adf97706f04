"""OVMS's gRPC sample clients' calls, against the server started the way their README starts OVMS.

`client/python/kserve-api/samples/grpc_*.py` of openvinotoolkit/model_server run against
`--model_name resnet --model_path ... --port 9000 --rest_port 8000 --layout NHWC:NCHW` on
ResNet-50 (input "0" NCHW, output "1463"). The samples cannot be fetched in CI, so this makes
the same tritonclient.grpc calls they make, on a model with ResNet's names and NCHW input
built here (a mean per channel through a fixed 3x1000 layer and softmax): liveness, readiness,
metadata, NHWC arrays with the output requested by name, JPEG bytes as a BYTES batch, and
async_infer with a callback. Every answer is also checked against REST for the same input.
"""

from __future__ import annotations

import io
import queue
from collections.abc import Iterator

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from tests.serverproc import ServerProcess

SIDE = 32
WEIGHTS = np.random.default_rng(3).standard_normal((3, 1000)).astype(np.float32)


def resnet_named_model() -> ov.Model:
    """"0" FP32 [1,3,SIDE,SIDE] (NCHW, as ResNet-50's IR) -> "1463" FP32 [1,1000] = softmax(mean @ W)."""
    image = ops.parameter([1, 3, SIDE, SIDE], ov.Type.f32, name="0")
    image.output(0).get_tensor().set_names({"0"})
    pooled = ops.reduce_mean(image, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    scores = ops.softmax(ops.matmul(pooled, ops.constant(WEIGHTS), False, False), 1)
    scores.output(0).get_tensor().set_names({"1463"})
    return ov.Model([scores.output(0)], [image], "resnet")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, grpc_transport: str) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("samples") / "resnet"
    ov.save_model(resnet_named_model(), base / "1" / "model.xml")
    with ServerProcess("--model_name", "resnet", "--model_path", str(base), "--layout", "NHWC:NCHW",
                       grpc=True, grpc_transport=grpc_transport) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_host) as triton_client:
        yield triton_client


def expected(nchw: np.ndarray) -> np.ndarray:
    pooled = nchw.astype(np.float64).mean(axis=(2, 3))
    logits = pooled @ WEIGHTS.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_health_and_metadata_as_the_samples_read_them(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() is True  # grpc_server_live.py
    assert client.is_server_ready() is True  # grpc_server_ready.py
    assert client.get_server_metadata().name  # grpc_server_metadata.py prints the message
    assert client.is_model_ready("resnet") is True  # grpc_model_ready.py (version "" = latest)
    metadata = client.get_model_metadata("resnet", "")  # grpc_model_metadata.py
    assert metadata.name == "resnet" and list(metadata.versions) == ["1"]
    (given,) = metadata.inputs
    (returned,) = metadata.outputs
    # The --layout NHWC:NCHW model is described in the layout clients send.
    assert (given.name, given.datatype, list(given.shape)) == ("0", "FP32", [1, SIDE, SIDE, 3])
    assert (returned.name, returned.datatype, list(returned.shape)) == ("1463", "FP32", [1, 1000])


def infer_arrays(client: grpcclient.InferenceServerClient, nhwc: np.ndarray) -> np.ndarray:
    """grpc_infer_resnet.py: an NHWC FP32 batch, output "1463" asked for by name."""
    given = grpcclient.InferInput("0", list(nhwc.shape), "FP32")
    given.set_data_from_numpy(nhwc)
    result = client.infer(model_name="resnet", inputs=[given], outputs=[grpcclient.InferRequestedOutput("1463")])
    return result.as_numpy("1463")


def test_nhwc_arrays_give_the_model_output(server: ServerProcess, client: grpcclient.InferenceServerClient) -> None:
    nhwc = np.random.default_rng(5).uniform(0, 255, (1, SIDE, SIDE, 3)).astype(np.float32)
    got = infer_arrays(client, nhwc)
    assert got.shape == (1, 1000) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected(nhwc.transpose(0, 3, 1, 2)), rtol=1e-4, atol=1e-7)
    rest = httpclient.InferenceServerClient(server.host)
    given = httpclient.InferInput("0", list(nhwc.shape), "FP32")
    given.set_data_from_numpy(nhwc, binary_data=True)
    over_rest = rest.infer("resnet", [given], outputs=[httpclient.InferRequestedOutput("1463", binary_data=True)])
    assert over_rest.as_numpy("1463").tobytes() == got.tobytes()


def test_jpeg_bytes_as_grpc_infer_binary_resnet_sends_them(server: ServerProcess,
                                                          client: grpcclient.InferenceServerClient) -> None:
    picture = jpeg(7)
    given = grpcclient.InferInput("0", [1], "BYTES")
    given.set_data_from_numpy(np.array([picture], dtype=np.object_))
    result = client.infer(model_name="resnet", inputs=[given], outputs=[grpcclient.InferRequestedOutput("1463")])
    got = result.as_numpy("1463")
    decoded = np.asarray(Image.open(io.BytesIO(picture)).convert("RGB"))[..., ::-1]  # BGR, as OpenCV decodes
    np.testing.assert_allclose(got, expected(decoded.astype(np.float32).transpose(2, 0, 1)[None]),
                               rtol=2e-3, atol=1e-6)  # two JPEG decoders may differ by a level
    rest = httpclient.InferenceServerClient(server.host)
    over_rest = httpclient.InferInput("0", [1], "BYTES")
    over_rest.set_data_from_numpy(np.array([picture], dtype=np.object_), binary_data=True)
    reply = rest.infer("resnet", [over_rest], outputs=[httpclient.InferRequestedOutput("1463", binary_data=True)])
    assert reply.as_numpy("1463").tobytes() == got.tobytes()  # the same decoder on both transports


def test_async_infer_with_a_callback(client: grpcclient.InferenceServerClient) -> None:
    """grpc_async_infer_resnet.py: async_infer for every image, results collected in callbacks."""
    images = np.random.default_rng(9).uniform(0, 255, (6, 1, SIDE, SIDE, 3)).astype(np.float32)
    done: queue.Queue = queue.Queue()
    for index, nhwc in enumerate(images):
        given = grpcclient.InferInput("0", list(nhwc.shape), "FP32")
        given.set_data_from_numpy(nhwc)
        client.async_infer(model_name="resnet", inputs=[given], request_id=str(index),
                           callback=lambda result, error: done.put((result, error)),
                           outputs=[grpcclient.InferRequestedOutput("1463")])
    answers = {}
    for _ in images:
        result, error = done.get(timeout=60)
        assert error is None, error
        answers[result.get_response().id] = result.as_numpy("1463")
    assert sorted(answers) == [str(i) for i in range(len(images))]
    for index, nhwc in enumerate(images):
        np.testing.assert_allclose(answers[str(index)], expected(nhwc.transpose(0, 3, 1, 2)), rtol=1e-4, atol=1e-7)


def test_a_bigger_batch_than_the_model_takes_is_invalid_argument(client: grpcclient.InferenceServerClient) -> None:
    """grpc_infer_binary_resnet.py --batchsize 2 on a batch-1 model: OVMS answers INVALID_ARGUMENT."""
    given = grpcclient.InferInput("0", [2], "BYTES")
    given.set_data_from_numpy(np.array([jpeg(1), jpeg(2)], dtype=np.object_))
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer(model_name="resnet", inputs=[given])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "batch size" in caught.value.message().lower(), caught.value.message()

