"""The benchmark's models, built in code with OpenVINO's opset API, and the repository that serves them.

Rules: nothing is downloaded. ResNet-50 is built from its definition (v1.5: the stride sits on
the 3x3 convolution) with seeded random weights and batch-norm folded into the convolutions,
so it costs exactly what the real network costs (4.1 GFLOPs, 25.6 M parameters) and gives
meaningless answers. The batch-friendly model comes from bench/batching_probe.py when it is
there. Request bodies for every scenario are built here too, so fastserve, KServe and the
in-process runs all see the same inputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov
import openvino.opset15 as ops

SEED = 20240601
RESNET_SHAPE = (1, 3, 224, 224)
# (bottleneck width, blocks, first stride) of ResNet-50's four stages.
RESNET_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


# Model builders


def build_add_model() -> ov.Model:
    """The tiny model: `sum` = a + b, FP32 [1,4] (the same as the bundled demo's add)."""
    a = ops.parameter([1, 4], ov.Type.f32, name="a")
    b = ops.parameter([1, 4], ov.Type.f32, name="b")
    total = ops.add(a, b)
    total.output(0).get_tensor().set_names({"sum"})
    a.output(0).get_tensor().set_names({"a"})
    b.output(0).get_tensor().set_names({"b"})
    return ov.Model([ops.result(total)], [a, b], "add")


def build_resnet50(seed: int = SEED) -> ov.Model:
    """ResNet-50 v1.5, input `input` FP32 [N,3,224,224] (N dynamic, for batching), output `probs` [N,1000]."""
    rng = np.random.default_rng(seed)
    image = ops.parameter([-1, 3, 224, 224], ov.Type.f32, name="input")
    image.output(0).get_tensor().set_names({"input"})
    x = _conv(rng, image.output(0), 3, 64, 7, 2)
    x = ops.relu(x).output(0)
    x = ops.max_pool(x, [2, 2], [1, 1], [1, 1], [1, 1], [3, 3]).output(0)
    channels = 64
    for width, blocks, stride in RESNET_STAGES:
        for index in range(blocks):
            x = _bottleneck(rng, x, channels, width, stride if index == 0 else 1)
            channels = width * 4
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    weights = (rng.standard_normal((channels, 1000), dtype=np.float32) / math.sqrt(channels)).astype(np.float32)
    logits = ops.add(ops.matmul(pooled, ops.constant(weights), False, False), ops.constant(np.zeros(1000, np.float32)))
    probs = ops.softmax(logits, 1)
    probs.output(0).get_tensor().set_names({"probs"})
    return ov.Model([ops.result(probs)], [image], "resnet50")


def _conv(rng: np.random.Generator, x: ov.Output, cin: int, cout: int, k: int, stride: int, gain: float = 1.0) -> Any:
    """Convolution + bias: batch-norm folded in, as OpenVINO's converters leave a trained ResNet."""
    std = gain * math.sqrt(2.0 / (cin * k * k))  # He init keeps activations in range through 50 layers
    weights = (rng.standard_normal((cout, cin, k, k), dtype=np.float32) * std).astype(np.float32)
    pad = k // 2
    conv = ops.convolution(x, ops.constant(weights), [stride, stride], [pad, pad], [pad, pad], [1, 1])
    bias = ops.constant(np.zeros((1, cout, 1, 1), dtype=np.float32))
    return ops.add(conv, bias).output(0)


def _bottleneck(rng: np.random.Generator, x: ov.Output, cin: int, width: int, stride: int) -> ov.Output:
    cout = width * 4
    y = ops.relu(_conv(rng, x, cin, width, 1, 1)).output(0)
    y = ops.relu(_conv(rng, y, width, width, 3, stride)).output(0)
    y = _conv(rng, y, width, cout, 1, 1, gain=0.2)  # small last gain: the residual sum stays bounded
    shortcut = x if stride == 1 and cin == cout else _conv(rng, x, cin, cout, 1, stride)
    return ops.relu(ops.add(y, shortcut)).output(0)


def batch_friendly_builder() -> Callable[[], ov.Model] | None:
    """bench/batching_probe.py's `build_batch_friendly_model`, or None while it does not exist yet.

    HOOK: the batching helper writes bench/batching_probe.py; until it lands the batch-friendly
    scenarios are reported as skipped.
    """
    try:
        from bench.batching_probe import build_batch_friendly_model  # type: ignore[import-not-found]
    except ImportError:
        return None
    return build_batch_friendly_model  # type: ignore[no-any-return]


# Repository


@dataclass
class ServedModel:
    """One entry of the benchmark repository: a folder, and the config.json keys beside name/base_path."""

    name: str
    folder: str
    extra: dict[str, Any] = field(default_factory=dict)


def save(model: ov.Model, root: Path, folder: str) -> Path:
    """Write <root>/<folder>/1/model.xml (+ .bin), replacing an older copy (~2 s for ResNet-50)."""
    target = root / folder / "1" / "model.xml"
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target), compress_to_fp16=False)
    return target


def write_config(root: Path, served: list[ServedModel], name: str = "config.json") -> Path:
    entries = [{"config": {"name": m.name, "base_path": m.folder, **m.extra}} for m in served]
    path = root / name
    path.write_text(json.dumps({"model_config_list": entries}, indent=2) + "\n")
    return path


# Request bodies


def json_body(inputs: dict[str, np.ndarray], binary_output: bool = False) -> bytes:
    """A KServe v2 JSON request; float32 values are written as Python floats (what most clients send)."""
    doc: dict[str, Any] = {
        "inputs": [
            {"name": name, "shape": list(array.shape), "datatype": _v2_type(array), "data": array.reshape(-1).tolist()}
            for name, array in inputs.items()
        ]
    }
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    return json.dumps(doc, separators=(",", ":")).encode()


def binary_body(inputs: dict[str, np.ndarray], binary_output: bool = True) -> tuple[bytes, int]:
    """A binary-extension request: (body, Inference-Header-Content-Length)."""
    doc: dict[str, Any] = {
        "inputs": [
            {"name": name, "shape": list(array.shape), "datatype": _v2_type(array),
             "parameters": {"binary_data_size": array.nbytes}}
            for name, array in inputs.items()
        ]
    }
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    head = json.dumps(doc, separators=(",", ":")).encode()
    return head + b"".join(np.ascontiguousarray(a).tobytes() for a in inputs.values()), len(head)


def _v2_type(array: np.ndarray) -> str:
    return {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}[
        array.dtype.name
    ]


def add_inputs() -> dict[str, np.ndarray]:
    return {"a": np.array([[1, 2, 3, 4]], np.float32), "b": np.array([[10, 20, 30, 40]], np.float32)}


def image_inputs(shape: tuple[int, ...] = RESNET_SHAPE, seed: int = SEED) -> dict[str, np.ndarray]:
    """A random image in [0, 1): the JSON form of it is 2.95 MB (17-19 digits per value)."""
    return {"input": np.random.default_rng(seed).random(shape, dtype=np.float32)}


def random_inputs(model: ov.Model, batch: int = 1, seed: int = SEED) -> dict[str, np.ndarray]:
    """Inputs for any model: dynamic dimensions become `batch` (first) or 1, values are seeded noise."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        dims = [d.get_length() if d.is_static else (batch if i == 0 else 1) for i, d in enumerate(shape)]
        dtype = port.get_element_type().to_dtype()
        if dtype.kind == "f":
            array = rng.random(dims, dtype=np.float32).astype(dtype)
        else:
            array = rng.integers(0, 100, dims).astype(dtype)
        inputs[port.get_any_name()] = array
    return inputs
