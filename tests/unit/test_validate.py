"""Binding decoded requests to model specs (fastserve.v2.validate), called directly: no server.

Specs are built by hand the way Servable describes OpenVINO ports: static dims (n, n), -1 as
(0, -1), ranges as (low, high).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastserve.errors import FastServeError
from fastserve.v2.datatypes import BY_NAME
from fastserve.v2.decode import decode_request
from fastserve.v2.types import Dim, TensorSpec
from fastserve.v2.validate import bind_inputs, check_shape

ANY: Dim = (0, -1)


def spec(name: str, datatype: str | None, dims: tuple[Dim, ...] | None, index: int = 0) -> TensorSpec:
    found = BY_NAME[datatype] if datatype is not None else None
    return TensorSpec(name, found, datatype.lower() if datatype else "u4", dims, index)


def specs(*items: TensorSpec) -> dict[str, TensorSpec]:
    return {s.name: s for s in sorted(items, key=lambda s: s.name)}


def request(*inputs: tuple[str, str, list[int], Any]) -> Any:
    doc = {"inputs": [{"name": n, "datatype": t, "shape": s, "data": d} for n, t, s, d in inputs]}
    return decode_request(json.dumps(doc).encode(), None)


def refused(req: Any, model: dict[str, TensorSpec]) -> str:
    with pytest.raises(FastServeError) as caught:
        bind_inputs(req, model)
    assert caught.value.status == 400
    return caught.value.message


ADD = specs(spec("a", "FP32", ((1, 1), (10, 10)), 0), spec("b", "FP32", ((1, 1), (10, 10)), 1))
RANGED = specs(spec("x", "FP32", ((1, 4), (3, 3))))
DYNAMIC = specs(spec("x", "FP32", (ANY, ANY)))


def test_arrays_come_back_in_the_models_input_order() -> None:
    # The request lists b first; the model's port order (index) is a, b.
    arrays = bind_inputs(request(("b", "FP32", [1, 10], [2.0] * 10), ("a", "FP32", [1, 10], [1.0] * 10)), ADD)
    assert [a.tolist() for a in arrays] == [[[1.0] * 10], [[2.0] * 10]]
    assert all(a.dtype == np.float32 for a in arrays)


def test_missing_input() -> None:
    message = refused(request(("a", "FP32", [1, 10], [0] * 10)), ADD)
    assert message == "Missing input with specific name - Required input: b"


def test_missing_input_reported_before_an_unknown_one() -> None:
    message = refused(request(("a", "FP32", [1, 10], [0] * 10), ("c", "FP32", [1, 10], [0] * 10)), ADD)
    assert message == "Missing input with specific name - Required input: b"


def test_extra_input() -> None:
    message = refused(request(("x", "FP32", [1, 1], [0]), ("zz", "FP32", [1], [0])), DYNAMIC)
    assert message == (
        "Invalid number of inputs - Expected: 1; Actual: 2; unexpected input: zz (the model's inputs are: x)"
    )


def test_wrong_datatype() -> None:
    message = refused(request(("x", "INT32", [1, 1], [1])), DYNAMIC)
    assert message == "Invalid input precision - Expected: FP32; Actual: INT32; input name: x"


def test_input_type_without_a_kserve_name() -> None:
    message = refused(request(("x", "FP32", [1], [1])), specs(spec("x", None, (ANY,))))
    assert message == "Input x has element type u4, which KServe v2 cannot carry"


def test_wrong_rank() -> None:
    message = refused(request(("a", "FP32", [1, 10, 1], [0] * 10), ("b", "FP32", [1, 10], [0] * 10)), ADD)
    assert message == "Invalid number of shape dimensions - Expected: (1,10); Actual: (1,10,1); input name: a"


def test_wrong_static_dim() -> None:
    message = refused(request(("a", "FP32", [1, 11], [0] * 11), ("b", "FP32", [1, 10], [0] * 10)), ADD)
    assert message == "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: a"


def test_wrong_batch_dim() -> None:
    message = refused(request(("a", "FP32", [2, 10], [0] * 20), ("b", "FP32", [1, 10], [0] * 10)), ADD)
    assert message == "Invalid input batch size - Expected: (1,10); Actual: (2,10); input name: a"


@pytest.mark.parametrize("shape", [[0, 0], [1, 1], [7, 3], [1000, 2]])
def test_dynamic_dims_take_anything(shape: list[int]) -> None:
    count = shape[0] * shape[1]
    (array,) = bind_inputs(request(("x", "FP32", shape, [0.5] * count)), DYNAMIC)
    assert array.shape == tuple(shape)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_range_inside(batch: int) -> None:
    (array,) = bind_inputs(request(("x", "FP32", [batch, 3], [1.0] * 3 * batch)), RANGED)
    assert array.shape == (batch, 3)


@pytest.mark.parametrize("batch", [0, 5])
def test_range_outside_both_bounds(batch: int) -> None:
    # The CPU plugin itself accepts a batch of 0 below the range: the server must refuse it.
    message = refused(request(("x", "FP32", [batch, 3], [1.0] * 3 * batch)), RANGED)
    assert message == f"Invalid input batch size - Expected: ([1~4],3); Actual: ({batch},3); input name: x"


def test_range_on_a_non_batch_dim() -> None:
    model = specs(spec("x", "FP32", ((1, 1), (2, 5))))
    message = refused(request(("x", "FP32", [1, 6], [0] * 6)), model)
    assert message == "Invalid input shape - Expected: (1,[2~5]); Actual: (1,6); input name: x"


def test_open_ended_range_in_messages() -> None:
    model = specs(spec("x", "FP32", ((2, -1),)))
    message = refused(request(("x", "FP32", [1], [0])), model)
    assert message == "Invalid input shape - Expected: ([2~inf]); Actual: (1); input name: x"


def test_dynamic_rank_takes_any_shape() -> None:
    model = specs(spec("x", "INT8", None))
    (array,) = bind_inputs(request(("x", "INT8", [1, 2, 1], [1, 2])), model)
    assert array.shape == (1, 2, 1) and array.dtype == np.int8


def test_scalar_input() -> None:
    model = specs(spec("x", "FP64", ()))
    (array,) = bind_inputs(request(("x", "FP64", [], [0.25])), model)
    assert array.shape == () and float(array) == 0.25


def test_bytes_from_json_are_passed_as_decoded() -> None:
    model = specs(spec("text", "BYTES", (ANY,)))
    req = request(("text", "BYTES", [2], ["héllo", ""]))
    (array,) = bind_inputs(req, model)
    assert array is req.inputs[0].data  # no copy, no re-split
    assert array.tolist() == ["héllo", ""]


def test_check_shape_directly() -> None:
    check_shape((3, 3), RANGED["x"])
    with pytest.raises(FastServeError):
        check_shape((3,), RANGED["x"])
