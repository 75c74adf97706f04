"""Build the bundled demo model repository (``fastserve/demo/models``) and sample requests.

Run as ``python -m fastserve.demo.build_demo``. It trains a small MLP on scikit-learn's 8x8 digits,
turns the learned weights into an OpenVINO IR with the opset API, writes a tiny two-input ``add`` model,
an OVMS-style ``config.json``, and sample PNG / JSON requests. Everything is seeded, so re-running it
reproduces the same files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openvino as ov
import openvino.opset15 as ops
import png
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

DEMO_DIR: Path = Path(__file__).resolve().parent
MODELS_DIR: Path = DEMO_DIR / "models"
SAMPLES_DIR: Path = DEMO_DIR / "samples"

SEED: int = 0
TEST_SIZE: float = 0.25
HIDDEN_UNITS: int = 48
MIN_ACCURACY: float = 0.95
#: sklearn digits pixels are 0..16 (high = ink); image decoders give 0..255.
PIXEL_MAX: float = 16.0
#: Labels of the sample PNGs written to ``samples/digit_<label>.png``.
SAMPLE_PNG_LABELS: tuple[int, ...] = (3, 5, 7)
#: Label of the digit stored in ``samples/digits_request.json``.
SAMPLE_REQUEST_LABEL: int = 8

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DigitsData:
    """The seeded train/test split of sklearn's digits, images as [N, 8, 8] in 0..16."""

    x_train: npt.NDArray[np.float64]
    x_test: npt.NDArray[np.float64]
    y_train: npt.NDArray[np.int64]
    y_test: npt.NDArray[np.int64]


def load_split() -> DigitsData:
    """Load sklearn's digits and split them with a fixed seed (stratified)."""
    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64)
    labels = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_SIZE, random_state=SEED, stratify=labels
    )
    return DigitsData(x_train, x_test, y_train, y_test)


def to_uint8_pixels(images: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Map sklearn pixel values 0..16 to 0..255 as a decoded 8-bit grayscale image would hold them."""
    return np.rint(images * (255.0 / PIXEL_MAX)).astype(np.uint8)


def train_classifier(data: DigitsData) -> MLPClassifier:
    """Train a one-hidden-layer MLP on flattened 0..16 pixels."""
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        activation="relu",
        solver="adam",
        alpha=1e-3,
        max_iter=600,
        random_state=SEED,
    )
    clf.fit(data.x_train.reshape(len(data.x_train), -1), data.y_train)
    return clf


def _name_output(node: ov.Node, name: str) -> ov.Node:
    """Give a node a friendly name and make ``name`` its output tensor name."""
    node.set_friendly_name(name)
    node.output(0).get_tensor().set_names({name})
    return node


def build_digits_model(clf: MLPClassifier) -> ov.Model:
    """Express the trained MLP as an OpenVINO graph taking NHWC 0..255 grayscale images."""
    w1, w2 = (np.asarray(w, dtype=np.float32) for w in clf.coefs_)
    b1, b2 = (np.asarray(b, dtype=np.float32) for b in clf.intercepts_)

    image = ops.parameter(ov.PartialShape([-1, 8, 8, 1]), ov.Type.f32, name="image")
    image.output(0).get_tensor().set_names({"image"})
    scaled = ops.multiply(image, ops.constant(np.float32(PIXEL_MAX / 255.0)), name="rescale_to_0_16")
    flat = ops.reshape(scaled, ops.constant(np.array([-1, 64], dtype=np.int64)), special_zero=False, name="flatten")
    hidden = ops.relu(
        ops.add(ops.matmul(flat, ops.constant(w1), False, False), ops.constant(b1)),
        name="hidden",
    )
    logits = ops.add(ops.matmul(hidden, ops.constant(w2), False, False), ops.constant(b2), name="logits")
    probabilities = _name_output(ops.softmax(logits, axis=1), "probabilities")
    top = ops.topk(
        probabilities,
        ops.constant(np.int64(1)),
        axis=1,
        mode="max",
        sort="value",
        index_element_type=ov.Type.i64,
        name="top1",
    )
    label = _name_output(ops.squeeze(top.output(1), ops.constant(np.array([1], dtype=np.int64))), "label")

    results = [ops.result(probabilities), ops.result(label)]
    results[0].set_friendly_name("probabilities/sink_port_0")
    results[1].set_friendly_name("label/sink_port_0")
    return ov.Model(results, [image], "digits")


def build_add_model() -> ov.Model:
    """The tiny two-input example: sum = a + b, product = a * b, both FP32 [-1, 4]."""
    params = []
    for name in ("a", "b"):
        param = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name=name)
        param.output(0).get_tensor().set_names({name})
        params.append(param)
    a, b = params
    total = _name_output(ops.add(a, b), "sum")
    product = _name_output(ops.multiply(a, b), "product")
    results = [ops.result(total), ops.result(product)]
    results[0].set_friendly_name("sum/sink_port_0")
    results[1].set_friendly_name("product/sink_port_0")
    return ov.Model(results, params, "add")


def save_model(model: ov.Model, name: str) -> Path:
    """Save ``model`` as ``models/<name>/1/model.xml`` (+ ``.bin``), FP32 weights."""
    version_dir = MODELS_DIR / name / "1"
    if version_dir.parent.exists():
        shutil.rmtree(version_dir.parent)
    version_dir.mkdir(parents=True)
    xml_path = version_dir / "model.xml"
    ov.save_model(model, xml_path, compress_to_fp16=False)
    return xml_path


def write_config() -> Path:
    """Write the OVMS-format ``config.json``; base paths are relative to its folder."""
    config = {
        "model_config_list": [
            {"config": {"name": "digits", "base_path": "digits"}},
            {"config": {"name": "add", "base_path": "add"}},
        ]
    }
    path = MODELS_DIR / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def _first_index(data: DigitsData, label: int, correct: npt.NDArray[np.bool_]) -> int:
    """Index of the first correctly classified test digit with ``label``."""
    candidates = np.flatnonzero((data.y_test == label) & correct)
    if candidates.size == 0:
        raise RuntimeError(f"no correctly classified test digit with label {label}")
    return int(candidates[0])


def write_samples(data: DigitsData, predicted: npt.NDArray[np.int64]) -> dict[str, int]:
    """Write the sample PNGs and JSON requests; returns file name -> expected label."""
    if SAMPLES_DIR.exists():
        shutil.rmtree(SAMPLES_DIR)
    SAMPLES_DIR.mkdir(parents=True)
    pixels = to_uint8_pixels(data.x_test)
    correct = predicted == data.y_test
    expected: dict[str, int] = {}

    for label in SAMPLE_PNG_LABELS:
        index = _first_index(data, label, correct)
        name = f"digit_{label}.png"
        with open(SAMPLES_DIR / name, "wb") as fh:
            png.Writer(width=8, height=8, greyscale=True, bitdepth=8).write(fh, pixels[index].tolist())
        expected[name] = label

    index = _first_index(data, SAMPLE_REQUEST_LABEL, correct)
    request = {
        "inputs": [
            {
                "name": "image",
                "shape": [1, 8, 8, 1],
                "datatype": "FP32",
                "data": [float(v) for v in pixels[index].reshape(-1)],
            }
        ]
    }
    (SAMPLES_DIR / "digits_request.json").write_text(json.dumps(request) + "\n", encoding="utf-8")
    expected["digits_request.json"] = SAMPLE_REQUEST_LABEL

    add_request = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [10, 20, 30, 40]},
        ]
    }
    (SAMPLES_DIR / "add_request.json").write_text(json.dumps(add_request) + "\n", encoding="utf-8")
    return expected


def predict_with_openvino(xml_path: Path, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Run the saved digits IR on [N, 8, 8] 0..255 images and return its labels."""
    compiled = ov.Core().compile_model(xml_path, "CPU")
    batch = images.astype(np.float32).reshape(-1, 8, 8, 1)
    outputs = compiled({"image": batch})
    return np.asarray(outputs[compiled.output("label")], dtype=np.int64)


def main() -> None:
    """Train, export, verify and write the demo repository."""
    data = load_split()
    clf = train_classifier(data)
    sk_accuracy = float(clf.score(data.x_test.reshape(len(data.x_test), -1), data.y_test))
    print(f"sklearn MLP ({HIDDEN_UNITS} hidden units) test accuracy: {sk_accuracy:.4f} on {len(data.y_test)} digits")

    digits_xml = save_model(build_digits_model(clf), "digits")
    add_xml = save_model(build_add_model(), "add")
    config = write_config()

    predicted = predict_with_openvino(digits_xml, to_uint8_pixels(data.x_test))
    ov_accuracy = float(np.mean(predicted == data.y_test))
    print(f"OpenVINO IR test accuracy on 0..255 uint8 pixels: {ov_accuracy:.4f}")
    if min(sk_accuracy, ov_accuracy) < MIN_ACCURACY:
        raise SystemExit(f"accuracy below {MIN_ACCURACY}")

    expected = write_samples(data, predicted)
    print(f"wrote {digits_xml.relative_to(DEMO_DIR)}, {add_xml.relative_to(DEMO_DIR)}, {config.relative_to(DEMO_DIR)}")
    for name, label in expected.items():
        print(f"wrote samples/{name}: expected label {label}")


if __name__ == "__main__":
    main()
