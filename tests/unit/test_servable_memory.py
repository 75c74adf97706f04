"""Servable keeps numpy views of its infer requests' tensors: they must follow every shape change.

Real OpenVINO models (tests/modelzoo.py) on the CPU plugin; nothing is mocked.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest

from fastserve.models.servable import SHARE_INPUT_BYTES, InferResult, Servable
from tests.modelzoo import add_model, dynamic_model


@pytest.fixture(scope="module")
def dynamic() -> Iterator[Servable]:
    yield Servable("dynamic", 1, ov.Core().compile_model(dynamic_model(), "CPU"), 1, "inline")


@pytest.fixture(scope="module")
def static() -> Iterator[Servable]:
    yield Servable("add", 1, ov.Core().compile_model(add_model(), "CPU"), 1, "inline")


def run(servable: Servable, arrays: list[np.ndarray], wanted: list[int]) -> list[np.ndarray]:
    result = servable.infer(arrays, wanted)
    assert type(result) is InferResult
    try:
        return [array.copy() for array in result.arrays]
    finally:
        result.release()


def test_dynamic_input_views_follow_every_shape(dynamic: Servable) -> None:
    rng = np.random.default_rng(3)
    big_rows = SHARE_INPUT_BYTES // (4 * 64) + 1  # shared with OpenVINO instead of copied
    # Grow, shrink, repeat, grow past the first size, a shared input in between, then small again.
    for shape in [(1, 4), (3, 4), (1, 4), (1, 4), (8, 16), (big_rows, 64), (2, 3), (2, 3), (40, 40), (1, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = run(dynamic, [x], [0])
        assert y.shape == shape
        np.testing.assert_array_equal(y, 2 * x)
    assert dynamic._fixed_outputs == [False]  # a dynamic output moves when it grows


def test_static_outputs_are_read_through_kept_views(static: Servable) -> None:
    assert static._fixed_outputs == [True, True]
    for value in (1.0, -2.0, 3.5):
        a = np.full((1, 10), value, dtype=np.float32)
        b = np.arange(10, dtype=np.float32).reshape(1, 10)
        result = static.infer([a, b], [0, 1])
        assert type(result) is InferResult
        slot = result._slot
        assert slot is not None
        # The arrays handed out are the request's own output memory, not copies.
        for index, array in enumerate(result.arrays):
            assert np.shares_memory(array, slot.request.get_output_tensor(index).data)
        np.testing.assert_array_equal(result.arrays[0], a + b)
        np.testing.assert_array_equal(result.arrays[1], a - b)
        result.release()


def test_a_model_with_string_outputs_loads_without_touching_them() -> None:
    # A static numeric output next to a string one: only the numeric one may keep a view (reading
    # .data of a string tensor copies it with a warning, and raises on an empty one in 2026.4).
    text = ops.parameter(ov.PartialShape([1]), ov.Type.string, name="text")
    begins, ends, symbols = ops.string_tensor_unpack(text).outputs()
    length = ops.subtract(ends, begins)
    echo = ops.string_tensor_pack(begins, ends, symbols)
    length.output(0).get_tensor().set_names({"length"})
    echo.output(0).get_tensor().set_names({"echo"})
    text.output(0).get_tensor().set_names({"text"})
    model = ov.Model([length, echo], [text], "static_strings")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        servable = Servable("static_strings", 1, ov.Core().compile_model(model, "CPU"), 1, "inline")
    assert servable._fixed_outputs == [True, False]
    lengths, echoes = run(servable, [np.array([b"abc"], dtype=object)], [0, 1])
    assert lengths.tolist() == [3] and echoes.tolist() in ([b"abc"], ["abc"])
