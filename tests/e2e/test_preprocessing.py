"""OVMS's mean, scale, color_format and precision on the real server, against numpy doing the same by hand.

Each model is y = x * 1 on an NCHW input, so the output is exactly what preprocessing made of
the request: ((convert_color(x) as model type) - mean) / scale, transposed to NCHW (OVMS's order).
The models run with INFERENCE_PRECISION_HINT f32: on a CPU with bf16 support OpenVINO would
otherwise run some steps (the RGB -> GRAY conversion) in bf16, 0.3% off numpy's float32.
"""

from __future__ import annotations

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

from tests.modelzoo import add_model, save
from tests.rawhttp import get, post_json
from tests.serverproc import ServerProcess

TIMEOUT = 60  # seconds for a start-up that must fail (importing OpenVINO and compiling a tiny model)
MEAN, SCALE = [1.0, 2.0, 3.0], [2.0, 4.0, 8.0]
# ITU-R BT.601 luma, the weights OpenVINO's RGB -> GRAY conversion uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # the same arithmetic as numpy on any CPU


def image_model(channels: int) -> ov.Model:
    """Input ``x`` FP32 [1,channels,4,4] (NCHW). Output ``y`` = x * 1, FP32 of the same shape."""
    x = ops.parameter([1, channels, 4, 4], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.multiply(x, ops.constant(np.float32(1.0))).output(0)
    y.get_tensor().set_names({"y"})
    return ov.Model([y], [x], f"image{channels}")


MODELS: dict[str, tuple[int, dict[str, Any]]] = {
    "full": (3, {"layout": "NHWC:NCHW", "mean": "[1,2,3]", "scale": "[2,4,8]", "color_format": "BGR:RGB",
                 "precision": "UINT8:FP32"}),
    "json_values": (3, {"layout": "NHWC:NCHW", "mean": [10, 20, 30], "scale": 2}),  # JSON numbers, not strings
    "gray": (1, {"layout": "NHWC:NCHW", "color_format": "GRAY:RGB"}),
    "nchw_scalar": (3, {"mean": "0.5", "precision": "FP16:FP32"}),  # one value needs no layout
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("preprocess")
    entries = []
    for name, (channels, fields) in MODELS.items():
        save(image_model(channels), root / name)
        entries.append({"config": {"name": name, "base_path": name, "plugin_config": F32, **fields}})
    save(image_model(3), root / "plain")
    save(add_model(), root / "two_inputs")
    (root / "config.json").write_text(json.dumps({"model_config_list": entries}))
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess("--config_path", str(repo / "config.json")) as proc:
        yield proc


def infer(port: int, model: str, x: np.ndarray, datatype: str) -> np.ndarray:
    doc = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}]}
    reply = post_json(port, f"/v2/models/{model}/infer", doc)
    assert reply.status == 200, reply.body
    (out,) = reply.json()["outputs"]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


def test_metadata_shows_what_the_client_sends(server: ServerProcess) -> None:
    def inputs(name: str) -> list[dict[str, Any]]:
        reply = get(server.port, f"/v2/models/{name}")
        assert reply.status == 200, reply.body
        return reply.json()["inputs"]

    assert inputs("full") == [{"name": "x", "datatype": "UINT8", "shape": [1, 4, 4, 3]}]  # precision + layout
    assert inputs("gray") == [{"name": "x", "datatype": "FP32", "shape": [1, 4, 4, 3]}]  # 3 channels in, 1 to the model
    assert inputs("nchw_scalar") == [{"name": "x", "datatype": "FP16", "shape": [1, 3, 4, 4]}]


def test_color_precision_mean_scale_and_layout_in_ovms_order(server: ServerProcess) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    expected = nhwc_to_nchw((rgb[..., ::-1].astype(np.float32) - MEAN) / SCALE)  # RGB -> BGR, then mean/scale
    np.testing.assert_allclose(infer(server.port, "full", rgb, "UINT8"), expected, rtol=1e-5, atol=1e-6)


def test_mean_and_scale_given_as_json_values(server: ServerProcess) -> None:
    x = np.random.default_rng(1).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    expected = nhwc_to_nchw((x - [10, 20, 30]) / 2)
    np.testing.assert_allclose(infer(server.port, "json_values", x, "FP32"), expected, rtol=1e-5, atol=1e-6)


def test_gray_from_rgb(server: ServerProcess) -> None:
    x = np.random.default_rng(2).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    expected = nhwc_to_nchw((x @ LUMA)[..., None])
    np.testing.assert_allclose(infer(server.port, "gray", x, "FP32"), expected, atol=1e-3)


def test_one_mean_for_every_channel_without_layout(server: ServerProcess) -> None:
    x = np.random.default_rng(3).uniform(-4, 4, (1, 3, 4, 4)).astype(np.float16)
    expected = x.astype(np.float32) - 0.5
    np.testing.assert_allclose(infer(server.port, "nchw_scalar", x, "FP16"), expected, rtol=1e-5, atol=1e-6)


def test_single_model_flags(repo: Path) -> None:
    flags = ("--model_name", "m", "--model_path", str(repo / "plain"), "--mean", "127.5", "--scale", "127.5",
             "--precision", "uint8:fp32", "--plugin_config", json.dumps(F32))
    with ServerProcess(*flags) as proc:
        x = np.arange(48, dtype=np.uint8).reshape(1, 3, 4, 4) * 5
        np.testing.assert_allclose(infer(proc.port, "m", x, "UINT8"), (x.astype(np.float32) - 127.5) / 127.5,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("base", "flags", "message"), [
    ("plain", ("--layout", "NHWC:NCHW", "--mean", "[1,2]"),
     "--mean: model m: mean [1,2] cannot be applied: Number of channels and mean/values size mismatch"),
    ("plain", ("--mean", "[1,2,3]"), "(set --layout, e.g. \"NHWC:NCHW\", so the channel dimension is known)"),
    ("plain", ("--layout", "NHWC:NCHW", "--color_format", "RGB:GRAY"),
     "--color_format: model m: color_format RGB:GRAY cannot be applied: Source color format 'GRAY' is not "
     "convertible to 'RGB'"),
    ("plain", ("--precision", "UINT8:UINT8", "--mean", "1"),
     "--precision, --mean: model m: precision UINT8:UINT8, mean 1 cannot be applied"),
    ("two_inputs", ("--scale", "2"), "--scale: model m has 2 inputs (a, b); mean, scale, color_format and precision "
     "apply to a model with one input, as in OVMS"),
])
def test_options_the_model_cannot_take_stop_start_up(repo: Path, base: str, flags: tuple[str, ...],
                                                     message: str) -> None:
    command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
               "--model_name", "m", "--model_path", str(repo / base), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
