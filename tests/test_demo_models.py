"""Tests for the committed demo model repository (``fastserve/demo``): IRs, config and sample requests.

They load the IRs straight from disk with ``ov.Core`` on CPU, so they check the files ``fastserve`` serves
by default, not the build script's in-memory objects.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov
import png
import pytest

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
DEMO_DIR: Path = REPO_ROOT / "fastserve" / "demo"
MODELS_DIR: Path = DEMO_DIR / "models"
SAMPLES_DIR: Path = DEMO_DIR / "samples"


def _load_module(path: Path, name: str) -> ModuleType:
    """Import a module from its file, independent of how ``fastserve`` is installed or on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def core() -> ov.Core:
    return ov.Core()


@pytest.fixture(scope="module")
def digits_model(core: ov.Core) -> ov.CompiledModel:
    return core.compile_model(MODELS_DIR / "digits" / "1" / "model.xml", "CPU")


@pytest.fixture(scope="module")
def add_model(core: ov.Core) -> ov.CompiledModel:
    return core.compile_model(MODELS_DIR / "add" / "1" / "model.xml", "CPU")


@pytest.fixture(scope="module")
def build_demo() -> ModuleType:
    return _load_module(DEMO_DIR / "build_demo.py", "_fastserve_demo_build_demo")


def _run_digits(model: ov.CompiledModel, images: npt.NDArray[Any]) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any]]:
    """Feed [N, 8, 8, 1] 0..255 images; return (probabilities, labels)."""
    outputs = model({"image": np.asarray(images, dtype=np.float32)})
    return outputs[model.output("probabilities")], outputs[model.output("label")]


def _read_json(name: str) -> dict[str, Any]:
    data = json.loads((SAMPLES_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_demo_config_points_at_ovms_config() -> None:
    demo = _load_module(DEMO_DIR / "__init__.py", "_fastserve_demo_init")
    assert demo.DEMO_CONFIG == MODELS_DIR / "config.json"
    config = json.loads(demo.DEMO_CONFIG.read_text(encoding="utf-8"))
    entries = [item["config"] for item in config["model_config_list"]]
    assert entries == [{"name": "digits", "base_path": "digits"}, {"name": "add", "base_path": "add"}]
    for entry in entries:
        version_dir = demo.DEMO_CONFIG.parent / entry["base_path"] / "1"
        assert (version_dir / "model.xml").is_file()
        assert (version_dir / "model.bin").is_file()


def test_demo_folder_is_small() -> None:
    total = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 200_000


def test_digits_signature(digits_model: ov.CompiledModel) -> None:
    (image,) = digits_model.inputs
    assert image.get_any_name() == "image"
    assert image.get_element_type() == ov.Type.f32
    assert image.get_partial_shape() == ov.PartialShape([-1, 8, 8, 1])
    probabilities = digits_model.output("probabilities")
    label = digits_model.output("label")
    assert len(digits_model.outputs) == 2
    assert probabilities.get_element_type() == ov.Type.f32
    assert probabilities.get_partial_shape() == ov.PartialShape([-1, 10])
    assert label.get_element_type() == ov.Type.i64
    assert label.get_partial_shape() == ov.PartialShape([-1])


def test_digits_accuracy_on_test_split(digits_model: ov.CompiledModel, build_demo: ModuleType) -> None:
    data = build_demo.load_split()
    images = (data.x_test * (255.0 / 16.0)).reshape(-1, 8, 8, 1)
    probabilities, labels = _run_digits(digits_model, images)
    assert labels.shape == (len(data.y_test),)
    accuracy = float(np.mean(labels == data.y_test))
    assert accuracy >= 0.95, accuracy
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probabilities >= 0.0)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))


def test_digits_batch_of_one(digits_model: ov.CompiledModel) -> None:
    probabilities, labels = _run_digits(digits_model, np.zeros((1, 8, 8, 1), dtype=np.float32))
    assert probabilities.shape == (1, 10)
    assert labels.shape == (1,)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def _sample_pngs() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("digit_*.png"))


def test_three_sample_pngs_exist() -> None:
    paths = _sample_pngs()
    assert len(paths) == 3
    assert len({p.stem for p in paths}) == 3


@pytest.mark.parametrize("path", _sample_pngs(), ids=lambda p: p.name)
def test_sample_png_classifies_as_named(path: Path, digits_model: ov.CompiledModel) -> None:
    width, height, rows, info = png.Reader(filename=str(path)).read()
    assert (width, height) == (8, 8)
    assert info["greyscale"] and not info["alpha"] and info["bitdepth"] == 8
    pixels = np.array([list(row) for row in rows], dtype=np.uint8)
    _, labels = _run_digits(digits_model, pixels.reshape(1, 8, 8, 1))
    assert int(labels[0]) == int(path.stem.removeprefix("digit_"))


def test_digits_request_json(digits_model: ov.CompiledModel, build_demo: ModuleType) -> None:
    request = _read_json("digits_request.json")
    (tensor,) = request["inputs"]
    assert tensor["name"] == "image"
    assert tensor["datatype"] == "FP32"
    assert tensor["shape"] == [1, 8, 8, 1]
    data = np.asarray(tensor["data"], dtype=np.float32)
    assert data.size == 64
    assert data.min() >= 0.0 and data.max() <= 255.0
    _, labels = _run_digits(digits_model, data.reshape(tensor["shape"]))
    assert int(labels[0]) == build_demo.SAMPLE_REQUEST_LABEL


def test_add_signature(add_model: ov.CompiledModel) -> None:
    assert [i.get_any_name() for i in add_model.inputs] == ["a", "b"]
    assert [o.get_any_name() for o in add_model.outputs] == ["sum", "product"]
    for port in [*add_model.inputs, *add_model.outputs]:
        assert port.get_element_type() == ov.Type.f32
        assert port.get_partial_shape() == ov.PartialShape([-1, 4])


def test_add_computes_sum_and_product(add_model: ov.CompiledModel) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    outputs = add_model({"a": a, "b": b})
    np.testing.assert_allclose(outputs[add_model.output("sum")], a + b, rtol=1e-6)
    np.testing.assert_allclose(outputs[add_model.output("product")], a * b, rtol=1e-6)


def test_add_request_json(add_model: ov.CompiledModel) -> None:
    request = _read_json("add_request.json")
    assert request == {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [10, 20, 30, 40]},
        ]
    }
    feeds = {t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]) for t in request["inputs"]}
    outputs = add_model(feeds)
    np.testing.assert_array_equal(outputs[add_model.output("sum")], [[11, 22, 33, 44]])
    np.testing.assert_array_equal(outputs[add_model.output("product")], [[10, 40, 90, 160]])
