"""Request decoding: body bytes (+ Inference-Header-Content-Length) -> InferRequest.

Rules: model-agnostic. Checks the structure and turns JSON `data` and binary sections into
numpy arrays (binary sections are viewed in place with np.frombuffer, never copied). Every
problem is an InvalidInput/BadRequest naming the field. Knows no OpenVINO and no sockets.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from fastserve.errors import BadRequest, InvalidInput
from fastserve.v2 import bigjson
from fastserve.v2.datatypes import BY_NAME, BYTES
from fastserve.v2.jsondata import MAX_NESTING_DEPTH, MAX_RANK, element_count, json_to_array
from fastserve.v2.types import InferInput, InferRequest, RequestedOutput

__all__ = ["MAX_NESTING_DEPTH", "decode_request", "element_count", "json_to_array", "parse_header_length"]

# Most elements a shape may describe, zero dims counted as 1: 2**40 (a tera-element) is far
# beyond any request body (1 GiB by default), and numpy refuses shapes whose non-zero dims
# overflow int64 even when a zero dim makes the tensor empty, e.g. [0, 2**62].
MAX_ELEMENTS = 2**40
_ABSENT: Any = object()  # a field not sent at all, as opposed to one sent as null



def parse_header_length(value: bytes | None, body_length: int) -> int | None:
    """The Inference-Header-Content-Length value, checked against the body (None: no header)."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith(b"-") and text[1:].isdigit():
        raise BadRequest(f"Inference-Header-Content-Length header must not be negative ({text.decode()})")
    if not text.isdigit():
        raise BadRequest(
            f"Inference-Header-Content-Length header is invalid and couldn't be parsed - "
            f"{text[:40].decode('latin-1')!r} is not a non-negative integer"
        )
    # More digits than any body length has (int() also refuses over 4300 digits with a ValueError).
    length = int(text) if len(text) <= 19 else body_length + 1
    if length > body_length:
        raise BadRequest(
            f"Inference-Header-Content-Length header exceeds actual payload length "
            f"({text[:40].decode()} > {body_length} bytes)"
        )
    return length


def decode_request(body: bytes | bytearray | memoryview, header_length: int | None) -> InferRequest:
    """Parse the JSON part and attach the binary sections, in the order of inputs that carry no `data`."""
    if header_length == 0:
        # Triton's raw binary request: no JSON at all, the whole body is the model's single input.
        return InferRequest(id=None, parameters={}, inputs=[], outputs=None, raw_binary=memoryview(body))
    # orjson reads bytes and bytearrays as they are: a view only when there is a binary part.
    view = body if header_length is None else memoryview(body)
    json_part = view if header_length is None else view[:header_length]
    if not json_part:
        raise BadRequest("The request is not valid JSON - the body is empty (a JSON object is expected)")
    doc = bigjson.parse(memoryview(json_part)) if len(json_part) >= bigjson.MIN_BYTES else None
    if doc is None:
        try:
            doc = orjson.loads(json_part)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The request is not valid JSON - {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("Request body should be JSON object")
    request = _request_fields(doc)
    if header_length is None:
        for item in request.inputs:
            if item.data is None:  # only JSON: every input must carry its `data`
                raise InvalidInput(f"Could not parse input content - input {item.name} has no data")
    else:
        _attach_binary(request.inputs, view[header_length:])  # type: ignore[index]
    return request


def _request_fields(doc: dict[str, Any]) -> InferRequest:
    # Optional fields are either absent or of their type: null is refused, as OVMS and Triton do.
    # `in` before a lookup: the common request has none of id, parameters and outputs.
    request_id = None
    if "id" in doc:
        request_id = doc["id"]
        if not isinstance(request_id, str):
            raise BadRequest("Request id must be a string")
    parameters: dict[str, Any] = {}
    binary_output = False
    if "parameters" in doc:
        parameters = parse_parameters(doc["parameters"], "request")
        binary_output = parameters.get("binary_data_output", False)
        if not isinstance(binary_output, bool):
            raise BadRequest("Could not parse request parameters - binary_data_output must be a boolean")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("Invalid JSON structure, missing inputs - inputs must be a non-empty list")
    inputs = [_input(item, index) for index, item in enumerate(raw_inputs)]
    if len({item.name for item in inputs}) != len(inputs):
        seen: set[str] = set()
        for item in inputs:
            if item.name in seen:
                raise InvalidInput(f"Duplicate input name: {item.name}")
            seen.add(item.name)
    outputs = _outputs(doc["outputs"]) if "outputs" in doc else None
    return InferRequest(request_id, parameters, inputs, outputs, binary_output)


def parse_parameters(value: Any, where: str) -> dict[str, Any]:
    """`parameters` is absent (_ABSENT) or an object of string, number or boolean values."""
    if value is _ABSENT:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Could not parse {where} parameters - parameters must be an object")
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise BadRequest(f"Could not parse {where} parameters - {key!r} must be a string, number or boolean")
    return value


def _input(item: Any, index: int) -> InferInput:
    if not isinstance(item, dict):
        raise InvalidInput(f"Could not parse input content - inputs[{index}] must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"Could not parse input content - inputs[{index}].name must be a non-empty string")
    shape = item.get("shape")
    if not isinstance(shape, list):
        raise InvalidInput(f"Could not parse input content - shape of input {name} must be a list of integers >= 0")
    for dim in shape:  # a plain loop: a generator under all() costs twice as much on short shapes
        if type(dim) is not int or dim < 0:
            raise InvalidInput(
                f"Could not parse input content - shape of input {name} must be a list of integers >= 0"
            )
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"Could not parse input content - shape of input {name} has {len(shape)} dimensions, "
                           f"more than {MAX_RANK}")
    if (math.prod(shape) or math.prod(d or 1 for d in shape)) > MAX_ELEMENTS:
        raise InvalidInput(f"Could not parse input content - shape {shape} of input {name} is too large")
    type_name = item.get("datatype")
    if not isinstance(type_name, str):
        raise InvalidInput(f"Could not parse input content - datatype of input {name} must be a string")
    datatype = BY_NAME.get(type_name)
    if datatype is None:
        raise InvalidInput(f"Unsupported data precision detected - {type_name!r} for input {name}")
    parameters = parse_parameters(item["parameters"], f"input {name}") if "parameters" in item else {}
    dims = tuple(shape)
    if "data" not in item:
        return InferInput(name, datatype, dims, parameters)
    if "binary_data_size" in parameters:
        raise InvalidInput(f"Request contains values both in binary data and in content value for input {name}")
    return InferInput(name, datatype, dims, parameters, json_to_array(item["data"], datatype, dims, name))


def _outputs(value: Any) -> list[RequestedOutput] | None:
    """The requested outputs; None (every output) when absent or [] (as Triton reads an empty list)."""
    if value is _ABSENT:
        return None
    if not isinstance(value, list):
        raise BadRequest("Could not parse output content - outputs must be a list")
    if not value:
        return None
    outputs = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"Could not parse output content - outputs[{index}] must be an object with a name")
        name = item["name"]
        if name in seen:
            raise BadRequest(f"Duplicate output name: {name}")
        seen.add(name)
        parameters = parse_parameters(item.get("parameters", _ABSENT), f"output {name}")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise BadRequest(f"Could not parse output content - binary_data of output {name} must be a boolean")
        outputs.append(RequestedOutput(name, binary, parameters))
    return outputs


def _attach_binary(inputs: list[InferInput], binary: memoryview | None) -> None:
    """Give each input without `data` its slice of the binary section, in order."""
    offset = 0
    size = 0 if binary is None else len(binary)
    pending = [item for item in inputs if item.data is None]
    for position, item in enumerate(pending):
        if binary is None:
            raise InvalidInput(f"Could not parse input content - input {item.name} has no data")
        declared = item.parameters.get("binary_data_size")
        if declared is not None and (type(declared) is not int or declared < 0):
            raise InvalidInput(f"binary_data_size parameter is invalid and cannot be parsed for input {item.name}")
        if item.datatype is BYTES:
            if declared is None:
                if position != len(pending) - 1:
                    raise InvalidInput(f"binary_data_size is required for BYTES input {item.name} (not the last one)")
                declared = size - offset
            length = declared
        else:
            length = element_count(item.shape) * item.datatype.itemsize
            if declared is not None and declared != length:
                raise InvalidInput(
                    f"Invalid content size of tensor proto - Expected: {length} bytes; "
                    f"Actual: {declared} bytes; input name: {item.name}"
                )
        if offset + length > size:
            raise InvalidInput(
                f"Received buffer size is smaller than binary_data_size parameter indicates for input {item.name} "
                f"({length} bytes needed, {size - offset} left)"
            )
        section = binary[offset : offset + length]
        offset += length
        if item.datatype is BYTES:
            item.raw = section
        else:
            item.data = np.frombuffer(section, dtype=item.datatype.numpy).reshape(item.shape)
    if offset < size:
        raise InvalidInput(f"Unexpected additional binary data: {size - offset} bytes after the last input")


def split_bytes_elements(raw: memoryview, name: str) -> list[bytes]:
    """BYTES in binary: each element is a 4-byte little-endian length, then that many bytes."""
    out = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise InvalidInput(f"Invalid content size of tensor proto - truncated length prefix in input {name}")
        length = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + length > size:
            raise InvalidInput(
                f"Invalid content size of tensor proto - Batch length metadata exceeded buffer size in input {name}"
            )
        out.append(bytes(raw[offset : offset + length]))
        offset += length
    return out
