"""Binds a decoded request to a model's input specs: names, datatypes, ranks and dims.

Rules: the checks and messages follow OVMS's order and wording (without its doubled
"input name:"), with KServe datatype names. BYTES inputs become string arrays, or decoded
images for 4-D numeric inputs. Knows TensorSpec, never OpenVINO.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fastserve.errors import InvalidInput
from fastserve.v2.datatypes import BYTES
from fastserve.v2.decode import element_count, split_bytes_elements
from fastserve.v2.types import InferInput, InferRequest, TensorSpec


def bind_inputs(request: InferRequest, specs: Mapping[str, TensorSpec]) -> list[np.ndarray]:
    """The request's arrays in the model's input order, each checked against its spec."""
    if request.raw_binary is not None:
        return [_raw_binary_input(request.raw_binary, specs)]
    given = {item.name: item for item in request.inputs}
    for spec_name in specs:
        if spec_name not in given:
            raise InvalidInput(f"Missing input with specific name - Required input: {spec_name}")
    if len(given) != len(specs):
        extra = sorted(set(given) - set(specs))
        raise InvalidInput(
            f"Invalid number of inputs - Expected: {len(specs)}; Actual: {len(given)}; "
            f"unexpected input: {extra[0]} (the model's inputs are: {', '.join(specs)})"
        )
    arrays: list[np.ndarray] = [np.empty(0)] * len(specs)
    for spec in specs.values():
        arrays[spec.index] = _bind(given[spec.name], spec)
    return arrays


def _bind(item: InferInput, spec: TensorSpec) -> np.ndarray:
    expected = spec.datatype
    if item.datatype is BYTES and expected is not BYTES:
        if spec.rank == 4 and expected is not None:
            from fastserve.v2 import images  # decoders load only when images are used

            return images.decode_images(_bytes_elements(item), item, spec)
        if expected is not None:
            rank = "of dynamic rank" if spec.rank is None else f"{spec.rank}-D"
            raise InvalidInput(
                f"Invalid input precision - Expected: {expected.name}; Actual: BYTES; input name: {item.name} "
                f"(encoded JPEG/PNG images need a 4-D NHWC input; this one is {rank}: {spec.describe_shape()})"
            )
    if expected is None:
        raise InvalidInput(f"Input {spec.name} has element type {spec.type_name}, which KServe v2 cannot carry")
    if item.datatype is not expected:
        raise InvalidInput(
            f"Invalid input precision - Expected: {expected.name}; Actual: {item.datatype.name}; "
            f"input name: {item.name}"
        )
    check_shape(item.shape, spec)
    if item.datatype is BYTES and item.raw is not None:
        return np.array(_bytes_elements(item), dtype=object).reshape(item.shape)
    # JSON data (BYTES included: an object array of str) is already shaped and counted by decode.
    assert item.data is not None
    return item.data


def _bytes_elements(item: InferInput) -> list[bytes] | list[str]:
    if item.raw is None:
        assert item.data is not None
        return list(item.data.reshape(-1))
    elements = split_bytes_elements(item.raw, item.name)
    expected = element_count(item.shape)
    if len(elements) != expected:
        raise InvalidInput(
            f"Invalid number of values in tensor proto container - Expected: {expected} values; "
            f"Actual: {len(elements)} values; input name: {item.name}"
        )
    return elements


def check_shape(shape: tuple[int, ...], spec: TensorSpec) -> None:
    """Static dims must match exactly; -1 takes anything; a range a:b takes values inside it."""
    dims = spec.dims
    if dims is None:
        return
    if len(shape) != len(dims):
        raise InvalidInput(
            f"Invalid number of shape dimensions - Expected: {spec.describe_shape()}; Actual: {_text(shape)}; "
            f"input name: {spec.name}"
        )
    for position, value in enumerate(shape):
        low, high = dims[position]
        if value < low or (high != -1 and value > high):
            what = "Invalid input batch size" if position == 0 and len(shape) > 1 else "Invalid input shape"
            raise InvalidInput(
                f"{what} - Expected: {spec.describe_shape()}; Actual: {_text(shape)}; input name: {spec.name}"
            )


def _text(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def _raw_binary_input(raw: memoryview, specs: Mapping[str, TensorSpec]) -> np.ndarray:
    """Triton's raw binary request: the whole body is the single input.

    The shape is the model's, with at most one dynamic dimension deduced from the body size; a
    BYTES input gets the whole body as one element (no length prefix), as Triton does.
    """
    if len(specs) != 1:
        raise InvalidInput(
            f"A raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; "
            f"this one has {len(specs)}"
        )
    (spec,) = specs.values()
    datatype = spec.datatype
    if datatype is None or spec.dims is None:
        raise InvalidInput(
            f"A raw binary request cannot feed input {spec.name} of type {spec.datatype_name} "
            f"and shape {spec.describe_shape()}"
        )
    if datatype is BYTES:
        count = 1
    elif len(raw) % datatype.itemsize:
        raise InvalidInput(
            f"Invalid content size of tensor proto - {len(raw)} bytes is not a whole number of "
            f"{datatype.itemsize}-byte {datatype.name} elements; input name: {spec.name}"
        )
    else:
        count = len(raw) // datatype.itemsize
    shape = _raw_shape(spec, count, len(raw))
    check_shape(shape, spec)
    if datatype is BYTES:
        return np.array([bytes(raw)], dtype=object).reshape(shape)
    return np.frombuffer(raw, dtype=datatype.numpy).reshape(shape)


def _raw_shape(spec: TensorSpec, count: int, size: int) -> tuple[int, ...]:
    assert spec.dims is not None and spec.datatype is not None
    dynamic = [i for i, (low, high) in enumerate(spec.dims) if low != high]
    known = element_count(tuple(low for low, high in spec.dims if low == high))
    if len(dynamic) > 1:
        raise InvalidInput(
            f"A raw binary request can deduce one dynamic dimension from the body size; "
            f"input {spec.name} is {spec.describe_shape()}"
        )
    if not dynamic or known == 0:
        if known != count:
            expected = known * max(spec.datatype.itemsize, 1)
            raise InvalidInput(
                f"Invalid content size of tensor proto - Expected: {expected} bytes; Actual: {size} bytes; "
                f"input name: {spec.name}"
            )
        return tuple(low if low == high else 0 for low, high in spec.dims)
    if count % known:
        raise InvalidInput(
            f"Invalid content size of tensor proto - {count} elements do not fill shape "
            f"{spec.describe_shape()}; input name: {spec.name}"
        )
    return tuple(low if low == high else count // known for low, high in spec.dims)
