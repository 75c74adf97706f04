"""Encoded JPEG/PNG inputs end to end: BYTES elements to 4-D NHWC inputs, through the real server.

The models are identities built here with OpenVINO's opset, so the response is exactly the
tensor the server made from the images: BGR, NHWC, resized and converted as OVMS would. The
bundled demo `digits` model classifies the sample PNGs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import openvino.opset16 as ops16
import pytest
import simplejpeg
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from fastserve.v2.images import INLINE_IMAGE_BYTES
from tests.rawhttp import Conn
from tests.serverproc import ServerProcess
from tests.unit.test_images import reference_resize

DEMO = Path(__file__).resolve().parents[2] / "fastserve" / "demo"
RNG = np.random.default_rng(11)

# name -> (element type, NHWC partial shape)
MODELS: dict[str, tuple[ov.Type, list[int]]] = {
    "any_u8": (ov.Type.u8, [-1, -1, -1, 3]),
    "any_f32": (ov.Type.f32, [-1, -1, -1, 3]),
    "gray_i8": (ov.Type.i8, [-1, -1, -1, 1]),
    "static_f32": (ov.Type.f32, [-1, 6, 5, 3]),
    "one_f16": (ov.Type.f16, [1, 4, 4, 3]),
    "nchw_f32": (ov.Type.f32, [1, 3, 8, 8]),
}


def identity(element: ov.Type, shape: list[int]) -> ov.Model:
    x = ops.parameter(ov.PartialShape(shape), element, name="image")
    x.output(0).get_tensor().set_names({"image"})
    out = ops16.identity(x)
    out.output(0).get_tensor().set_names({"out"})
    return ov.Model([out.output(0)], [x], "identity")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("images")
    entries = []
    for name, (element, shape) in MODELS.items():
        ov.save_model(identity(element, shape), root / name / "1" / "model.xml", compress_to_fp16=False)
        entries.append({"config": {"name": name, "base_path": name}})
    entries.append({"config": {"name": "digits", "base_path": str(DEMO / "models" / "digits")}})
    # OVMS's way to feed images to an NCHW model: the server transposes NHWC requests.
    entries.append({"config": {"name": "nchw_as_nhwc", "base_path": "nchw_f32", "layout": "NHWC:NCHW"}})
    (root / "config.json").write_text(json.dumps({"model_config_list": entries}))
    with ServerProcess("--config_path", str(root / "config.json")) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.host)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def infer(client: httpclient.InferenceServerClient, model: str, encoded: list[bytes], name: str = "image",
          output: str = "out") -> np.ndarray:
    given = httpclient.InferInput(name, [len(encoded)], "BYTES")
    given.set_data_from_numpy(np.array(encoded, dtype=object), binary_data=True)
    result = client.infer(model, [given], outputs=[httpclient.InferRequestedOutput(output, binary_data=True)])
    return result.as_numpy(output)


def test_png_comes_back_exact_as_bgr_nhwc(client: httpclient.InferenceServerClient) -> None:
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = infer(client, "any_u8", [png(rgb)])
    assert out.dtype == np.uint8 and out.shape == (1, 5, 7, 3)
    np.testing.assert_array_equal(out[0], rgb[:, :, ::-1])


def test_element_type_converted_without_scaling(client: httpclient.InferenceServerClient) -> None:
    rgb = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = infer(client, "any_f32", [png(rgb)])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], rgb[:, :, ::-1].astype(np.float32))
    gray = np.array([[0, 5, 127], [128, 200, 255]], dtype=np.uint8)
    out = infer(client, "gray_i8", [png(gray)])
    assert out.dtype == np.int8 and out.shape == (1, 2, 3, 1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[0, 5, 127], [127, 127, 127]])  # saturated, not scaled


def test_fp16_input_and_gray_expanded_to_three_channels(client: httpclient.InferenceServerClient) -> None:
    gray = RNG.integers(0, 256, (4, 4), dtype=np.uint8)
    out = infer(client, "one_f16", [png(gray)])
    assert out.dtype == np.float16 and out.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(out[0], np.repeat(gray[:, :, None], 3, axis=2).astype(np.float16))


def test_rgba_alpha_dropped_for_three_channels(client: httpclient.InferenceServerClient) -> None:
    rgba = RNG.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    out = infer(client, "any_u8", [png(rgba)])
    np.testing.assert_array_equal(out[0], rgba[:, :, [2, 1, 0]])


def test_nchw_model_with_nhwc_layout_takes_images(client: httpclient.InferenceServerClient) -> None:
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = infer(client, "nchw_as_nhwc", [png(rgb)])
    assert out.shape == (1, 3, 8, 8)  # the model's own NCHW output
    np.testing.assert_array_equal(out[0], rgb[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))


def test_jpeg_within_tolerance_of_a_reference_decode(client: httpclient.InferenceServerClient) -> None:
    y, x = np.mgrid[0:24, 0:40]
    rgb = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1).clip(0, 255).astype(np.uint8)
    data = simplejpeg.encode_jpeg(rgb, quality=92, colorspace="RGB")
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1].astype(int)
    out = infer(client, "any_u8", [data])
    assert out.shape == (1, 24, 40, 3)
    assert np.abs(out[0].astype(int) - reference).max() <= 2
    assert np.abs(out[0].astype(int) - rgb[:, :, ::-1]).mean() < 3  # and close to the original pixels


def test_batch_resized_to_the_static_size(client: httpclient.InferenceServerClient) -> None:
    images = [RNG.integers(0, 256, shape, dtype=np.uint8) for shape in ((9, 7, 3), (4, 4, 3), (6, 5, 3))]
    out = infer(client, "static_f32", [png(i) for i in images])
    assert out.shape == (3, 6, 5, 3) and out.dtype == np.float32
    for got, image in zip(out, images, strict=True):
        expected = reference_resize(image[:, :, ::-1].astype(np.float64), 6, 5)
        np.testing.assert_allclose(got, expected, atol=1e-3)
    np.testing.assert_array_equal(out[2], images[2][:, :, ::-1])  # already 6x5: untouched


def test_batch_of_several_images_of_one_size(client: httpclient.InferenceServerClient) -> None:
    images = [RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8) for _ in range(5)]
    out = infer(client, "any_u8", [png(i) for i in images])
    assert out.shape == (5, 4, 6, 3)
    for got, image in zip(out, images, strict=True):
        np.testing.assert_array_equal(got, image[:, :, ::-1])


def test_big_images_decoded_off_the_loop_are_exact(client: httpclient.InferenceServerClient) -> None:
    images = [RNG.integers(0, 256, (96, 80, 3), dtype=np.uint8) for _ in range(2)]
    encoded = [png(i) for i in images]
    assert sum(map(len, encoded)) > INLINE_IMAGE_BYTES  # this request takes the worker-thread path
    out = infer(client, "any_u8", encoded)
    for got, image in zip(out, images, strict=True):
        np.testing.assert_array_equal(got, image[:, :, ::-1])


@pytest.mark.parametrize("label", [3, 5, 7])
def test_demo_digits_classifies_the_sample_pngs(client: httpclient.InferenceServerClient, label: int) -> None:
    data = (DEMO / "samples" / f"digit_{label}.png").read_bytes()
    assert infer(client, "digits", [data], output="label").tolist() == [label]


def test_demo_digits_batch(client: httpclient.InferenceServerClient) -> None:
    data = [(DEMO / "samples" / f"digit_{label}.png").read_bytes() for label in (7, 3, 5)]
    assert infer(client, "digits", data, output="label").tolist() == [7, 3, 5]


# Refusals: 400 naming the input, and the server goes on


def post_images(server: ServerProcess, model: str, encoded: list[bytes]) -> tuple[int, str]:
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(encoded)]}]}).encode()
    binary = b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    with Conn(server.port) as conn:
        reply = conn.request("POST", f"/v2/models/{model}/infer", head + binary,
                             {"Inference-Header-Content-Length": str(len(head))})
        assert conn.request("GET", "/v2/health/live").status == 200  # same connection, still served
    return reply.status, reply.json().get("error", "")


GOOD = png(np.zeros((4, 4, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("model", "encoded", "words"),
    [
        ("any_u8", [GOOD, b"GIF89a not an image"], "input image, image 2 of 2: the data is neither a JPEG nor a PNG"),
        ("any_u8", [b"\xff\xd8\xff\xe0" + b"\x00" * 30], "corrupt or unsupported JPEG"),
        ("any_u8", [GOOD[:40]], "input image, image 1 of 1: corrupt or unsupported PNG"),
        ("gray_i8", [GOOD], "Invalid number of channels in binary input - Expected: 1; Actual: 3 (BGR)"),
        ("nchw_f32", [GOOD], "Expected: 8; Actual: 3 (BGR); input image, image 1 of 1 (the input looks NCHW"),
        ("any_u8", [GOOD, png(np.zeros((5, 4, 3), dtype=np.uint8))], "required to have the same resolution"),
        ("one_f16", [GOOD, GOOD], "Invalid input batch size"),
    ],
)
def test_bad_images_are_400_naming_the_input(server: ServerProcess, model: str, encoded: list[bytes],
                                             words: str) -> None:
    status, message = post_images(server, model, encoded)
    assert status == 400
    assert words in message


def test_tritonclient_reports_the_image_error(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="neither a JPEG nor a PNG"):
        infer(client, "any_u8", [b"plain text"])
