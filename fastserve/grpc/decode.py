"""ModelInferRequest bytes -> the core's InferRequest (the gRPC twin of v2/decode.py).

Rules: model-agnostic, like the REST decoder: checks the message's structure and turns typed
`contents` and `raw_input_contents` into numpy arrays; binding to the model (names, datatypes,
shapes, images) is the core's, so both transports give the same messages. Raw contents are
viewed in place (np.frombuffer over protobuf's own bytes: no copy beyond the parse).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from fastserve.errors import BadRequest, InvalidInput
from fastserve.grpc.proto.inference_pb2 import ModelInferRequest
from fastserve.grpc.status import INVALID_VERSION
from fastserve.v2.datatypes import BY_NAME, BYTES, Datatype
from fastserve.v2.decode import MAX_ELEMENTS
from fastserve.v2.jsondata import MAX_RANK, element_count, in_range, sized
from fastserve.v2.types import InferInput, InferRequest, RequestedOutput


class NotAMessage(Exception):
    """The bytes are no ModelInferRequest: gRPC's own servers answer INTERNAL for that."""


# The typed field of each datatype, and the numpy type protobuf's values arrive in (a narrower
# datatype is range-checked, then cast). FP16 has no field: it travels in raw_input_contents only.
_CONTENTS: dict[str, tuple[str, np.dtype]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
}


def parse_request(body: bytes) -> ModelInferRequest:
    try:
        return ModelInferRequest.FromString(body)
    except DecodeError as exc:
        raise NotAMessage(f"the request is not a valid ModelInferRequest: {exc}") from None


def parse_version(text: str) -> int | None:
    """OVMS reads the version with stoi64: "" and "0" are the default version, digits a version."""
    if not text:
        return None
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits.isdigit() or len(digits) > 18:
        raise BadRequest(INVALID_VERSION)
    version = int(stripped)
    return version or None


def decode_request(message: ModelInferRequest, raw_views: list[memoryview] | None = None) -> InferRequest:
    """`raw_views`: the raw_input_contents, when grpc/rawsplit.py took them out of the message."""
    raw: Any = message.raw_input_contents if raw_views is None else raw_views
    inputs = message.inputs
    if not inputs:
        raise BadRequest("Invalid message structure - the request has no inputs")
    if raw and len(raw) != len(inputs):
        raise InvalidInput(
            f"Invalid message structure - Size of raw_input_contents: {len(raw)} is different than number of "
            f"inputs: {len(inputs)}"
        )
    decoded: list[InferInput] = []
    seen: set[str] = set()
    for index, tensor in enumerate(inputs):
        name = tensor.name
        if name in seen:
            raise InvalidInput(f"Duplicate input name: {name}")
        seen.add(name)
        item = _input_header(tensor)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    "Invalid message structure - Passing buffers both in InferInputTensor contents and in "
                    f"raw_input_contents is not allowed. Detected buffer in InferInputTensor contents for input: "
                    f"{name}"
                )
            _attach_raw(item, raw[index])
        else:
            _attach_contents(item, tensor.contents)
        decoded.append(item)
    wanted = message.outputs
    outputs = [RequestedOutput(out.name, True, parameters(out.parameters)) for out in wanted] if wanted else None
    if outputs is not None:
        names = [out.name for out in outputs]
        if len(set(names)) != len(names):
            raise BadRequest(f"Duplicate output name: {next(n for n in names if names.count(n) > 1)}")
    return InferRequest(message.id or None, parameters(message.parameters), decoded, outputs, True)


def parameters(mapping: Any) -> dict[str, Any]:
    """map<string, InferParameter> -> {key: bool | int | str | float}; a parameter with no value is left out."""
    if not mapping:
        return {}
    out = {}
    for key, value in mapping.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(value, choice)
    return out


def _input_header(tensor: ModelInferRequest.InferInputTensor) -> InferInput:
    name = tensor.name
    if not name:
        raise InvalidInput("Could not parse input content - an input has no name")
    shape = tuple(tensor.shape)
    if shape and min(shape) < 0:
        raise InvalidInput(f"Could not parse input content - shape of input {name} must be a list of integers >= 0")
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"Could not parse input content - shape of input {name} has {len(shape)} dimensions, "
                           f"more than {MAX_RANK}")
    count = math.prod(shape)  # with a 0 dim, the other dims must still fit: a [0, 2**62] shape is refused
    if count > MAX_ELEMENTS or (not count and math.prod(d or 1 for d in shape) > MAX_ELEMENTS):
        raise InvalidInput(f"Could not parse input content - shape {list(shape)} of input {name} is too large")
    datatype = BY_NAME.get(tensor.datatype)
    if datatype is None:
        raise InvalidInput(f"Unsupported data precision detected - {tensor.datatype!r} for input {name}")
    given = tensor.parameters
    return InferInput(name, datatype, shape, parameters(given) if given else {})


def _attach_raw(item: InferInput, raw: bytes | memoryview) -> None:
    if item.datatype is BYTES:
        item.raw = memoryview(raw)  # 4-byte little-endian length prefixes, split when bound
        return
    expected = element_count(item.shape) * item.datatype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"Invalid content size of tensor proto - Expected: {expected} bytes; Actual: {len(raw)} bytes; "
            f"input name: {item.name}"
        )
    item.data = np.frombuffer(raw, dtype=item.datatype.numpy).reshape(item.shape)


def _attach_contents(item: InferInput, contents: Any) -> None:
    datatype = item.datatype
    expected = element_count(item.shape)
    if datatype is BYTES:
        values = contents.bytes_contents
        if not values and expected:
            raise InvalidInput(f"Bytes contents is empty - input name: {item.name}")
        item.data = sized(np.array(list(values), dtype=object), expected, item.name).reshape(item.shape)
        return
    typed = _CONTENTS.get(datatype.name)
    if typed is None:
        raise InvalidInput(
            f"Invalid input precision - {datatype.name} has no typed contents field; send input {item.name} "
            f"in raw_input_contents"
        )
    field, wire_dtype = typed
    values = getattr(contents, field)
    array = sized(np.array(values, dtype=wire_dtype), expected, item.name)
    item.data = _as(array, datatype, item.name).reshape(item.shape)


def _as(array: np.ndarray, datatype: Datatype, name: str) -> np.ndarray:
    if array.dtype == datatype.numpy:
        return array
    return in_range(array, datatype, name)

