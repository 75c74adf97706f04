"""Small, real OpenVINO models for fastserve's tests, built in code.

Every model here is built with OpenVINO's opset API, so the tests need no downloads
and no model files in git. ``write_repository`` writes all of them into an
OVMS-style model repository with a ``config.json``, which the end-to-end tests serve.

Rules for this module:

* Tensor names are the KServe names. Each parameter and each model output gets its
  tensor name set explicitly with ``Output.get_tensor().set_names``. The friendly
  name that ``ops.parameter(..., name=...)`` sets is not a tensor name, and nothing
  should depend on it.
* Every docstring says exactly what the model computes, so tests can work out the
  expected outputs with numpy.
* Models are deterministic. Any weights come from ``numpy.random.default_rng(0)``.
* Models are saved in the OVMS layout ``<base_path>/<version>/model.xml`` + ``model.bin``,
  and ``compress_to_fp16=False`` keeps the weights FP32.
* Building and saving the whole repository takes well under a second, so it can be
  done for each test session.
* Every model is checked on the CPU plugin by ``tests/test_modelzoo.py``. A CPU-plugin
  quirk that shapes a model is described at that model's builder.
* Only ``openvino`` and ``numpy`` are imported. Nothing from ``fastserve`` is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import openvino.opset16 as ops16

__all__ = [
    "DATATYPES",
    "add_model",
    "dynamic_model",
    "failing_model",
    "heavy_model",
    "identity_model",
    "ranged_model",
    "save",
    "string_model",
    "versioned_model",
    "write_repository",
]

DATATYPES: list[str] = [
    "BOOL",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "FP16",
    "FP32",
    "FP64",
]

_OV_TYPES: dict[str, ov.Type] = {
    "BOOL": ov.Type.boolean,
    "INT8": ov.Type.i8,
    "INT16": ov.Type.i16,
    "INT32": ov.Type.i32,
    "INT64": ov.Type.i64,
    "UINT8": ov.Type.u8,
    "UINT16": ov.Type.u16,
    "UINT32": ov.Type.u32,
    "UINT64": ov.Type.u64,
    "FP16": ov.Type.f16,
    "FP32": ov.Type.f32,
    "FP64": ov.Type.f64,
}

# FASTSERVE_TEST_SHRINK=N makes the models whose cost matters N (or N^2) times cheaper: a stand-in
# for a faster CPU, which no test may notice (the fast run of issue 11; see tests/slowwork.py).
SHRINK = max(1, int(os.environ.get("FASTSERVE_TEST_SHRINK", "1")))
# heavy_model: output channels of its 3x3 convolutions, in order (the input has 3 channels). The
# hidden ones are divided by SHRINK; the last stays 16, so outputs keep their shape.
_HEAVY_CHANNELS: tuple[int, ...] = tuple(max(2, c // SHRINK) for c in (32, 64, 64, 64)) + (16,)


def _param(name: str, shape: ov.PartialShape | list[int], element_type: ov.Type) -> ov.Output:
    """Create a Parameter whose friendly name and tensor name are both ``name``."""
    node = ops.parameter(ov.PartialShape(shape), element_type, name=name)
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def _named(output: ov.Output | ov.Node, name: str) -> ov.Output:
    """Give the tensor of ``output`` (or of a node's first output) exactly the name ``name``."""
    out = output.output(0) if isinstance(output, ov.Node) else output
    out.get_tensor().set_names({name})
    return out


def _model(outputs: list[ov.Output], inputs: list[ov.Output], name: str) -> ov.Model:
    """Make a model from named outputs and named parameter outputs."""
    return ov.Model(outputs, [i.get_node() for i in inputs], name)


def _i64(values: list[int]) -> ov.Output:
    """An INT64 constant, for axes, shapes and slice bounds."""
    return ops.constant(np.array(values, dtype=np.int64)).output(0)


def save(model: ov.Model, base_path: Path, version: int = 1) -> Path:
    """Write ``model`` to ``base_path/<version>/model.xml`` (+ ``model.bin``) and return that version directory.

    Missing directories are created. An existing model in that directory is overwritten.
    Weights are stored uncompressed (FP32 stays FP32).
    """
    version_dir = Path(base_path) / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, version_dir / "model.xml", compress_to_fp16=False)
    return version_dir


def add_model() -> ov.Model:
    """Inputs ``a`` and ``b``, FP32 [1,10]. Outputs ``sum`` = a + b and ``diff`` = a - b, both FP32 [1,10]."""
    a = _param("a", [1, 10], ov.Type.f32)
    b = _param("b", [1, 10], ov.Type.f32)
    total = _named(ops.add(a, b), "sum")
    diff = _named(ops.subtract(a, b), "diff")
    return _model([total, diff], [a, b], "add")


def dynamic_model() -> ov.Model:
    """Input ``x``, FP32 [-1,-1]. Output ``y`` = x * 2, FP32 with the same shape as x."""
    x = _param("x", [-1, -1], ov.Type.f32)
    y = _named(ops.multiply(x, ops.constant(np.float32(2.0))), "y")
    return _model([y], [x], "dynamic")


def ranged_model() -> ov.Model:
    """Input ``x``, FP32 [1..4, 3]. Output ``y`` = x + 1, FP32 with the same shape.

    The CPU plugin raises at inference for a batch of 5 or more. A batch of 0 is
    *accepted* (OpenVINO 2026.4), even though it is below the lower bound, so a
    server that wants to enforce the range must check it itself.
    """
    x = _param("x", ov.PartialShape([ov.Dimension(1, 4), ov.Dimension(3)]), ov.Type.f32)
    y = _named(ops.add(x, ops.constant(np.float32(1.0))), "y")
    return _model([y], [x], "ranged")


def versioned_model(version: int) -> ov.Model:
    """Input ``x``, FP32 [-1,4]. Output ``y`` = x + ``version`` (as FP32), so each version gives a different answer."""
    x = _param("x", [-1, 4], ov.Type.f32)
    y = _named(ops.add(x, ops.constant(np.float32(version))), "y")
    return _model([y], [x], f"versioned_v{version}")


def identity_model(datatype: str) -> ov.Model:
    """Input ``in`` of KServe type ``datatype`` (one of ``DATATYPES``), shape [-1,-1]. Output ``out`` = in.

    ``out`` has the same type and shape as ``in``.

    The identity is an opset16 ``Identity`` op. The CPU plugin really runs it as a
    memcpy node. It cannot be a direct Parameter->Result edge, because then the
    input and output would share one tensor and so one set of names.

    CPU quirk (OpenVINO 2026.4), checked with real inferences:

    * BOOL, the 8/16/32-bit integers, UINT64, FP16, FP32 and FP64 come back bit-exact
      over their whole range (UINT64 up to 2**64-1, FP64 at full double precision,
      FP16 including inf/nan/subnormals).
    * INT64 is exact only within the int32 range. The CPU plugin turns every i64
      operation into i32 during compilation (its ConvertPrecision i64->i32 step).
      A value outside [-2**31, 2**31-1] comes back as its low 32 bits, sign-extended,
      i.e. ``x.astype(np.int32).astype(np.int64)``.
      Every real op tried behaves the same (Convert, Identity, Reshape, Concat,
      Select, Gather, If, u64 round trips, ...). Only a direct Parameter->Result
      edge keeps 64 bits, and that merges the input and output names. A plain
      Convert to the same type is *worse*: it also truncates UINT64 and FP64
      (to i32 and f32).
    """
    if datatype not in _OV_TYPES:
        raise ValueError(f"unknown KServe datatype {datatype!r}; expected one of {DATATYPES}")
    x = _param("in", [-1, -1], _OV_TYPES[datatype])
    out = _named(ops16.identity(x), "out")
    return _model([out], [x], f"identity_{datatype.lower()}")


def string_model() -> ov.Model:
    """Input ``text``, string [-1]. Outputs ``length`` (INT32 [-1]) and ``echo`` (string [-1]).

    ``length`` is the byte length of each string (UTF-8 bytes for str input), and
    ``echo`` is the same strings.

    Built with ``string_tensor_unpack`` (begins/ends/symbols). ``length`` = ends - begins,
    and ``echo`` = ``string_tensor_pack(begins, ends, symbols)``.

    CPU quirk (OpenVINO 2026.4): when the batch is empty (shape [0]), a bare
    StringTensorUnpack is skipped, and the outputs keep the shape and data of the
    previous inference. This happens even in a *different* infer request of the
    same compiled model. To avoid it, the model appends one constant string "."
    to the batch before unpacking and slices the extra element off again. That
    way unpack always has something to do, and an empty batch gives empty outputs.
    Python-binding quirks: ``Tensor.str_data`` of an empty string tensor is an empty
    float64 array, and ``ops.constant`` on a numpy str array usually fails with
    ``MemoryError: std::bad_alloc`` (wrapping the array in ``ov.Tensor`` works).
    """
    text = _param("text", [-1], ov.Type.string)
    # ov.Tensor first: ops.constant(np.array(["."])) raises std::bad_alloc most of the time (2026.4 bindings).
    padded = ops.concat([text, ops.constant(ov.Tensor(np.array(["."])))], 0)
    begins, ends, symbols = ops.string_tensor_unpack(padded).outputs()
    drop_last = (_i64([0]), _i64([-1]), _i64([1]))
    begins = ops.slice(begins, *drop_last).output(0)
    ends = ops.slice(ends, *drop_last).output(0)
    length = _named(ops.subtract(ends, begins), "length")
    echo = _named(ops.string_tensor_pack(begins, ends, symbols), "echo")
    return _model([length, echo], [text], "string")


def failing_model() -> ov.Model:
    """Inputs ``x`` (FP32 [-1]) and ``shape`` (INT64 [2]). Output ``y`` = reshape(x, shape), FP32 [?,?].

    The reshape uses special_zero=False.

    If ``prod(shape)`` equals ``len(x)`` (one entry may be -1), the result is
    ``x.reshape(shape)``. Otherwise the CPU plugin raises a RuntimeError inside
    ``infer()``: compile and input binding succeed, and inference itself fails.
    The compiled model is still usable afterwards, in the same request and in
    new ones.

    ``shape`` is fixed at length 2 rather than [-1] because:

    * The CPU plugin refuses to compile a Reshape whose output rank is dynamic,
      which a [-1] target would give.
    * Fixing the rank inside the graph (reshaping a [-1] ``shape`` to [2]) leaves
      the compiled model broken for good. After one request whose ``shape`` has
      the wrong length, every later inference fails, even in new infer requests
      and even with valid inputs (OpenVINO 2026.4).

    So a ``shape`` of the wrong length is a shape error that the server can catch
    before inference. Wrong *values* are the runtime (500) failure.
    """
    x = _param("x", [-1], ov.Type.f32)
    shape = _param("shape", [2], ov.Type.i64)
    y = _named(ops.reshape(x, shape, special_zero=False), "y")
    return _model([y], [x, shape], "failing")


def _heavy_parameters() -> list[tuple[np.ndarray, np.ndarray]]:
    """The (weight [out,in,3,3], bias [out]) FP32 pairs of heavy_model's convolutions, drawn from default_rng(0).

    For each layer in turn: weight = standard_normal * sqrt(2 / (in*9)), then bias = standard_normal * 0.1.
    """
    rng = np.random.default_rng(0)
    layers = []
    cin = 3
    for cout in _HEAVY_CHANNELS:
        weight = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        bias = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        layers.append((weight, bias))
        cin = cout
    return layers


def heavy_model() -> ov.Model:
    """Input ``x``, FP32 [-1,3,64,64]. Output ``y``, FP32 [N,16]. Slow enough to exercise the async execution path.

    Five 3x3 convolutions (stride 1, padding 1) with 32, 64, 64, 64 and 16 output
    channels. Each adds a bias and applies ReLU: ``h = relu(conv(h, W) + b)``.
    At the end, ``y`` = mean of h over H and W. The weights come from
    ``_heavy_parameters()`` (numpy ``default_rng(0)``). About 0.4 GFLOP an image: a real
    network's work for the tests of results and of many callers. No test relies on how long it
    takes (tests/slowwork.py sizes slow work); test repositories run it with
    ``execution_mode: async`` where the async path is what they test. On CPUs with bf16/AMX, the
    default CPU inference precision may be bf16, so compare results with a tolerance.
    """
    x = _param("x", [-1, 3, 64, 64], ov.Type.f32)
    h = x
    for weight, bias in _heavy_parameters():
        conv = ops.convolution(h, ops.constant(weight), [1, 1], [1, 1], [1, 1], [1, 1])
        h = ops.relu(ops.add(conv, ops.constant(bias.reshape(1, -1, 1, 1)))).output(0)
    y = _named(ops.reduce_mean(h, _i64([2, 3]), keep_dims=False), "y")
    return _model([y], [x], "heavy")


def slow_compile_model(shape: list[int], ops_count: int = 450) -> ov.Model:
    """A long chain of sin(x * 0.5): cheap to build, but the CPU plugin needs seconds to compile it.
    Input "x", output "y", both FP32 of `shape`; used to catch the server in the middle of a compile."""
    x = ops.parameter(shape, ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    h = x.output(0)
    half = ops.constant(np.float32(0.5))
    for _ in range(ops_count):
        h = ops.sin(ops.multiply(h, half)).output(0)
    h.get_tensor().set_names({"y"})
    return ov.Model([h], [x], "slow")


def write_repository(root: Path) -> Path:
    """Build the end-to-end test repository under ``root`` and return the path of ``root/config.json``.

    Layout: ``root/<name>/<version>/model.xml|bin`` for
    ``add`` (v1), ``dynamic`` (v1), ``ranged`` (v1), ``versioned`` (v1, v2, v3),
    ``identity_<datatype lowercased>`` for every entry of ``DATATYPES`` (v1),
    ``string`` (v1), ``failing`` (v1) and ``heavy`` (v1, ``execution_mode: async``).
    ``config.json`` uses the OVMS format
    ``{"model_config_list": [{"config": {"name": ..., "base_path": "<name>"}}, ...]}``.
    Each ``base_path`` is relative to the config file's directory. ``versioned`` also
    has ``"model_version_policy": {"all": {}}`` so that all three versions are served.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []

    def add(name: str, versions: dict[int, ov.Model], policy: dict[str, object] | None = None,
            execution: dict[str, object] | None = None) -> None:
        for version, model in versions.items():
            save(model, root / name, version)
        config: dict[str, object] = {"name": name, "base_path": name, **(execution or {})}
        if policy is not None:
            config["model_version_policy"] = policy
        entries.append({"config": config})

    add("add", {1: add_model()})
    add("dynamic", {1: dynamic_model()})
    add("ranged", {1: ranged_model()})
    add("versioned", {v: versioned_model(v) for v in (1, 2, 3)}, {"all": {}})
    for datatype in DATATYPES:
        add(f"identity_{datatype.lower()}", {1: identity_model(datatype)})
    add("string", {1: string_model()})
    add("failing", {1: failing_model()})
    add("heavy", {1: heavy_model()}, execution={"execution_mode": "async"})

    config_path = root / "config.json"
    config_path.write_text(json.dumps({"model_config_list": entries}, indent=2) + "\n")
    return config_path
