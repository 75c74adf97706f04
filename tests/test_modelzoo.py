"""Checks that every model in ``modelzoo`` really runs on the CPU plugin and computes what its docstring says.

The models are loaded back from the repository that ``write_repository`` writes,
so the IR round trip and the OVMS layout are tested as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from tests import modelzoo
from tests.cpus import needs_two_cpus

NP_TYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}

EXPECTED_MODELS = (
    ["add", "dynamic", "ranged", "versioned"]
    + [f"identity_{d.lower()}" for d in modelzoo.DATATYPES]
    + ["string", "failing", "heavy"]
)


@pytest.fixture(scope="module")
def core() -> ov.Core:
    return ov.Core()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return modelzoo.write_repository(tmp_path_factory.mktemp("repo")).parent


def compile_from(core: ov.Core, repo: Path, name: str, version: int = 1, **config: str) -> ov.CompiledModel:
    return core.compile_model(core.read_model(repo / name / str(version) / "model.xml"), "CPU", config)


def run(
    compiled: ov.CompiledModel, inputs: dict[str, object], request: ov.InferRequest | None = None
) -> dict[str, np.ndarray]:
    """Infer and return copies of all outputs by tensor name (string outputs as numpy str arrays)."""
    request = request or compiled.create_infer_request()
    request.infer(inputs)
    results = {}
    for port in compiled.outputs:
        tensor = request.get_tensor(port)
        data = tensor.str_data if port.get_element_type() == ov.Type.string else tensor.data
        results[port.get_any_name()] = np.array(data, copy=True)
    return results


def port_summary(ports: list[ov.ConstOutput]) -> list[tuple[set[str], ov.Type, str]]:
    return [(p.get_names(), p.get_element_type(), str(p.get_partial_shape())) for p in ports]


# ---------------------------------------------------------------- repository layout


def test_config_json_lists_every_model_with_relative_base_paths(repo: Path) -> None:
    config = json.loads((repo / "config.json").read_text())
    entries = [e["config"] for e in config["model_config_list"]]
    assert [e["name"] for e in entries] == EXPECTED_MODELS
    for entry in entries:
        assert entry["base_path"] == entry["name"]
        assert not Path(entry["base_path"]).is_absolute()
        expected_policy = {"all": {}} if entry["name"] == "versioned" else None
        assert entry.get("model_version_policy") == expected_policy


def test_version_directories(repo: Path) -> None:
    for name in EXPECTED_MODELS:
        versions = sorted(int(p.name) for p in (repo / name).iterdir())
        assert versions == ([1, 2, 3] if name == "versioned" else [1]), name
        for v in versions:
            assert (repo / name / str(v) / "model.xml").is_file()
            assert (repo / name / str(v) / "model.bin").is_file()


def test_save_returns_version_dir(tmp_path: Path) -> None:
    version_dir = modelzoo.save(modelzoo.dynamic_model(), tmp_path / "m", version=7)
    assert version_dir == tmp_path / "m" / "7"
    assert (version_dir / "model.xml").is_file() and (version_dir / "model.bin").is_file()


def test_tensor_names_types_and_shapes_survive_the_ir(core: ov.Core, repo: Path) -> None:
    f32, i64 = ov.Type.f32, ov.Type.i64
    expected = {
        "add": (
            [({"a"}, f32, "[1,10]"), ({"b"}, f32, "[1,10]")],
            [({"sum"}, f32, "[1,10]"), ({"diff"}, f32, "[1,10]")],
        ),
        "dynamic": ([({"x"}, f32, "[?,?]")], [({"y"}, f32, "[?,?]")]),
        "ranged": ([({"x"}, f32, "[1..4,3]")], [({"y"}, f32, "[1..4,3]")]),
        "string": (
            [({"text"}, ov.Type.string, "[?]")],
            [({"length"}, ov.Type.i32, "[?]"), ({"echo"}, ov.Type.string, "[?]")],
        ),
        "failing": ([({"x"}, f32, "[?]"), ({"shape"}, i64, "[2]")], [({"y"}, f32, "[?,?]")]),
        "heavy": ([({"x"}, f32, "[?,3,64,64]")], [({"y"}, f32, "[?,16]")]),
    }
    for name, (inputs, outputs) in expected.items():
        model = core.read_model(repo / name / "1" / "model.xml")
        assert port_summary(model.inputs) == inputs, name
        assert port_summary(model.outputs) == outputs, name
        compiled = core.compile_model(model, "CPU")
        assert port_summary(compiled.inputs) == inputs, name
        assert port_summary(compiled.outputs) == outputs, name
    for datatype in modelzoo.DATATYPES:
        compiled = compile_from(core, repo, f"identity_{datatype.lower()}")
        et = ov.Type(NP_TYPES[datatype])
        assert port_summary(compiled.inputs) == [({"in"}, et, "[?,?]")]
        assert port_summary(compiled.outputs) == [({"out"}, et, "[?,?]")]


# ---------------------------------------------------------------- arithmetic models


def test_add(core: ov.Core, repo: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 1, 10)).astype(np.float32)
    out = run(compile_from(core, repo, "add"), {"a": a, "b": b})
    np.testing.assert_array_equal(out["sum"], a + b)
    np.testing.assert_array_equal(out["diff"], a - b)


def test_dynamic_any_shape(core: ov.Core, repo: Path) -> None:
    compiled = compile_from(core, repo, "dynamic")
    request = compiled.create_infer_request()
    for shape in [(1, 1), (3, 7), (0, 4), (2, 5)]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 3.5
        y = run(compiled, {"x": x}, request)["y"]
        assert y.shape == shape
        np.testing.assert_array_equal(y, x * 2)


@needs_two_cpus
def test_ranged_accepts_batches_within_range_and_rejects_above(core: ov.Core, repo: Path) -> None:
    compiled = compile_from(core, repo, "ranged")
    for batch in (1, 4, 2):
        x = np.full((batch, 3), batch, dtype=np.float32)
        np.testing.assert_array_equal(run(compiled, {"x": x})["y"], x + 1)
    with pytest.raises(RuntimeError):
        run(compiled, {"x": np.zeros((5, 3), np.float32)})


def test_versioned_versions_differ(core: ov.Core, repo: Path) -> None:
    x = np.array([[0.5, -1.0, 2.0, 100.0], [0, 0, 0, 0]], dtype=np.float32)
    for version in (1, 2, 3):
        y = run(compile_from(core, repo, "versioned", version), {"x": x})["y"]
        np.testing.assert_array_equal(y, x + np.float32(version))


# ---------------------------------------------------------------- identity models


def extreme_values(datatype: str) -> np.ndarray:
    """A 3x4 array with the hardest values of the type (range limits, precision, specials)."""
    t = NP_TYPES[datatype]
    if datatype == "BOOL":
        return np.array([[True, False, True, True], [False, False, True, False], [True, True, False, False]])
    if datatype.startswith("FP"):
        f = np.finfo(t)
        return np.array(
            [
                [np.pi, -1 / 3, f.max, -f.max],
                [f.tiny, f.smallest_subnormal, f.eps, 1 + f.eps],
                [np.inf, -np.inf, np.nan, -0.0],
            ],
            dtype=t,
        )
    info = np.iinfo(t)
    lo, hi = int(info.min), int(info.max)
    if datatype == "INT64":  # exact only within int32 on CPU (see identity_model)
        lo, hi = -(2**31), 2**31 - 1
    return np.array(
        [[lo, hi, hi - 1, lo + 1], [0, 1, hi // 3, (lo // 3) or 7], [hi // 2 + 1, 12345 % hi, lo // 2, 2]], dtype=t
    )


@pytest.mark.parametrize("datatype", modelzoo.DATATYPES)
def test_identity_is_exact(core: ov.Core, repo: Path, datatype: str) -> None:
    compiled = compile_from(core, repo, f"identity_{datatype.lower()}")
    request = compiled.create_infer_request()
    x = extreme_values(datatype)
    for value in (x, x[:1, :2], x[:0], x.T.copy()):
        out = run(compiled, {"in": value}, request)["out"]
        assert out.dtype == value.dtype and out.shape == value.shape
        assert out.tobytes() == value.tobytes()  # bit-exact, NaN payloads and -0.0 included


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("UINT64", [2**64 - 1, 2**64 - 2, 2**63, 2**63 + 5, 2**40 + 3, 2**32 + 7]),
        ("FP64", [np.pi, 1 / 3, 1e300, 1e-300, 2.0**-1074, 0.1 + 2.0**-55]),
    ],
)
def test_identity_keeps_64_bit_values(core: ov.Core, repo: Path, datatype: str, values: list) -> None:
    x = np.array([values], dtype=NP_TYPES[datatype])
    out = run(compile_from(core, repo, f"identity_{datatype.lower()}"), {"in": x})["out"]
    assert out.tobytes() == x.tobytes()


def test_identity_int64_wraps_to_low_32_bits_outside_int32(core: ov.Core, repo: Path) -> None:
    """Pins down the documented CPU limitation; skips (asking for a docstring update) once OpenVINO keeps 64 bits."""
    x = np.array([[-(2**63), 2**63 - 1, 2**40 + 3, 2**31, -(2**31) - 1]], dtype=np.int64)
    out = run(compile_from(core, repo, "identity_int64"), {"in": x})["out"]
    if np.array_equal(out, x):
        pytest.skip("this OpenVINO keeps full int64 range; update the identity_model docstring")
    np.testing.assert_array_equal(out, x.astype(np.int32).astype(np.int64))


def test_identity_rejects_unknown_datatype() -> None:
    with pytest.raises(ValueError):
        modelzoo.identity_model("BYTES")


# ---------------------------------------------------------------- string model


def test_string_lengths_and_echo(core: ov.Core, repo: Path) -> None:
    compiled = compile_from(core, repo, "string")
    request = compiled.create_infer_request()
    words = ["hello", "", "héllo wörld", "日本語", "a b"]
    out = run(compiled, {"text": np.array(words)}, request)
    np.testing.assert_array_equal(out["length"], [len(w.encode()) for w in words])
    assert out["length"].dtype == np.int32
    assert request.get_tensor("echo").str_data.tolist() == words

    raw = [b"ab\x00c", b"\xff\xfe", b"x"]  # arbitrary bytes, not UTF-8
    request.infer({"text": ov.Tensor(np.array(raw, dtype=np.bytes_))})
    assert request.get_tensor("length").data.tolist() == [4, 2, 1]
    assert request.get_tensor("echo").bytes_data.tolist() == raw


def test_string_empty_batch_gives_empty_outputs(core: ov.Core, repo: Path) -> None:
    compiled = compile_from(core, repo, "string")
    request = compiled.create_infer_request()
    run(compiled, {"text": np.array(["abc", "de"])}, request)
    for req in (request, compiled.create_infer_request()):
        req.infer({"text": np.array([], dtype=np.str_)})
        assert list(req.get_tensor("length").shape) == [0]
        assert list(req.get_tensor("echo").shape) == [0]
    out = run(compiled, {"text": np.array(["", "xyz"])}, request)
    assert out["length"].tolist() == [0, 3]


# ---------------------------------------------------------------- failing model


@needs_two_cpus
def test_failing_model_raises_only_for_mismatching_shape(core: ov.Core, repo: Path) -> None:
    compiled = compile_from(core, repo, "failing")
    request = compiled.create_infer_request()
    x = np.arange(6, dtype=np.float32)
    for shape in ([2, 3], [3, -1], [6, 1]):
        y = run(compiled, {"x": x, "shape": np.array(shape, np.int64)}, request)["y"]
        np.testing.assert_array_equal(y, x.reshape(shape))
    for bad in ([4, 2], [5, 5], [0, 6], [-1, -1]):
        with pytest.raises(RuntimeError):
            request.infer({"x": x, "shape": np.array(bad, np.int64)})
        # the failure must not poison the request or the compiled model
        np.testing.assert_array_equal(run(compiled, {"x": x, "shape": np.array([3, 2])}, request)["y"], x.reshape(3, 2))
        np.testing.assert_array_equal(run(compiled, {"x": x, "shape": np.array([2, 3])})["y"], x.reshape(2, 3))


# ---------------------------------------------------------------- heavy model


def numpy_heavy(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for weight, bias in modelzoo._heavy_parameters():
        n, c, height, width = h.shape
        padded = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # n,c,H,W,3,3
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, height, width, c * 9)
        h = cols @ weight.reshape(weight.shape[0], -1).T.astype(np.float64) + bias
        h = np.maximum(h, 0).transpose(0, 3, 1, 2)
    return h.mean(axis=(2, 3))


def test_heavy_matches_numpy_and_is_not_trivial(core: ov.Core, repo: Path) -> None:
    compiled = compile_from(core, repo, "heavy", INFERENCE_PRECISION_HINT="f32")
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    y = run(compiled, {"x": x})["y"]
    assert y.shape == (2, 16)
    np.testing.assert_allclose(y, numpy_heavy(x), rtol=1e-4, atol=1e-5)
    assert np.abs(y).max() > 1e-2  # activations did not die out

    # Not trivial in work either: its multiply-adds, counted from the weights, not timed.
    macs = sum(64 * 64 * weight.size for weight, _ in modelzoo._heavy_parameters())
    assert macs > (1e6 if modelzoo.SHRINK > 1 else 1e8), macs
