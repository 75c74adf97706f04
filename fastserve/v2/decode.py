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
from fastserve.v2.datatypes import BY_NAME, BYTES, Datatype
from fastserve.v2.types import InferInput, InferRequest, RequestedOutput

# Triton and OVMS both cap JSON nesting at 100; deeper `data` is refused before numpy sees it.
MAX_NESTING_DEPTH = 100
# Most elements a shape may describe, zero dims counted as 1: 2**40 (a tera-element) is far
# beyond any request body (1 GiB by default), and numpy refuses shapes whose non-zero dims
# overflow int64 even when a zero dim makes the tensor empty, e.g. [0, 2**62].
MAX_ELEMENTS = 2**40
# numpy arrays have at most 64 dimensions (NPY_MAXDIMS); a longer shape could never be built.
MAX_RANK = 64
_ABSENT: Any = object()  # a field not sent at all, as opposed to one sent as null
# Float64 magnitudes from which a cast rounds to inf: the type's max plus half an ulp there.
# Longest JSON `data` list decoded by the Python fast path (_small_flat); longer ones go to numpy.
SMALL_FLAT = 64
# The value types the fast path accepts per datatype (bool is not an int here) and the closed range
# the values must lie in (floats: within the overflow limits below, exclusive).
_FLAT_TYPES: dict[str, frozenset[type]] = {
    "BOOL": frozenset({bool}),
    **{name: frozenset({int}) for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")},
    **{name: frozenset({int, float}) for name in ("FP16", "FP32", "FP64")},
}
# Both keyed by datatype name: a str hashes from cache, a numpy dtype does not.
_FLOAT_OVERFLOW = {"FP16": 65520.0, "FP32": float(2**128 - 2**103)}
_INT_RANGES = {
    name: (int(np.iinfo(name.lower()).min), int(np.iinfo(name.lower()).max))
    for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
}
_FLAT_BOUNDS: dict[str, tuple[float, float]] = {
    **_INT_RANGES,
    **{name: (-math.nextafter(limit, 0), math.nextafter(limit, 0)) for name, limit in _FLOAT_OVERFLOW.items()},
}


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
    view = memoryview(body)
    if header_length == 0:
        # Triton's raw binary request: no JSON at all, the whole body is the model's single input.
        return InferRequest(id=None, parameters={}, inputs=[], outputs=None, raw_binary=view)
    json_part = view if header_length is None else view[:header_length]
    if not json_part:
        raise BadRequest("The request is not valid JSON - the body is empty (a JSON object is expected)")
    doc = bigjson.parse(json_part) if len(json_part) >= bigjson.MIN_BYTES else None
    if doc is None:
        try:
            doc = orjson.loads(json_part)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The request is not valid JSON - {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("Request body should be JSON object")
    request = _request_fields(doc)
    binary = view[header_length:] if header_length is not None else None
    _attach_binary(request.inputs, binary)
    return request


def _request_fields(doc: dict[str, Any]) -> InferRequest:
    # Optional fields are either absent or of their type: null is refused, as OVMS and Triton do.
    request_id = doc.get("id", _ABSENT)
    if request_id is _ABSENT:
        request_id = None
    elif not isinstance(request_id, str):
        raise BadRequest("Request id must be a string")
    parameters = parse_parameters(doc.get("parameters", _ABSENT), "request")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise BadRequest("Could not parse request parameters - binary_data_output must be a boolean")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("Invalid JSON structure, missing inputs - inputs must be a non-empty list")
    inputs = [_input(item, index) for index, item in enumerate(raw_inputs)]
    seen: set[str] = set()
    for item in inputs:
        if item.name in seen:
            raise InvalidInput(f"Duplicate input name: {item.name}")
        seen.add(item.name)
    outputs = _outputs(doc.get("outputs", _ABSENT))
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
    result = InferInput(name, datatype, tuple(shape), parameters)
    if "data" in item:
        if "binary_data_size" in parameters:
            raise InvalidInput(f"Request contains values both in binary data and in content value for input {name}")
        result.data = json_to_array(item["data"], datatype, result.shape, name)
    return result


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


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def json_to_array(data: Any, datatype: Datatype, shape: tuple[int, ...], name: str) -> np.ndarray:
    """JSON `data` (flat or nested) -> an array of the datatype shaped as `shape`.

    Only the element count is checked against the shape, as the reference page says. Values
    must really be of the datatype's kind: no strings as numbers, no floats as integers, no
    numbers as booleans, integers within range (all 64 bits of INT64 and UINT64).
    """
    if isinstance(data, bigjson.Array):  # from a large body: numbers go straight into a buffer
        _check_depth(data, name)  # the same nesting limits as below
        kind = datatype.numpy.kind
        flat = bigjson.tensor_from_array(data, kind) if kind in "fiu" else None
        if flat is not None:
            return _sized(_in_range(flat, datatype, name), element_count(shape), name).reshape(shape)
        data = data.as_list()  # anything else takes the general path and its messages
    if not isinstance(data, list):
        raise InvalidInput(f"Could not parse input content - data of input {name} must be an array")
    expected = element_count(shape)
    if datatype is BYTES:
        flat = _flatten_strings(data, name)
        array = np.array(flat, dtype=object)
    else:
        array = _small_flat(data, datatype) if len(data) <= SMALL_FLAT else None
        if array is None:
            _check_depth(data, name)
            array = _numeric(data, datatype, name)
    return _sized(array, expected, name).reshape(shape)


def _sized(array: np.ndarray, expected: int, name: str) -> np.ndarray:
    if array.size != expected:
        raise InvalidInput(
            f"Invalid number of values in tensor proto container - Expected: {expected} values; "
            f"Actual: {array.size} values; input name: {name}"
        )
    return array


def _small_flat(data: list[Any], datatype: Datatype) -> np.ndarray | None:
    """A short flat list of the right kind of values, checked in Python (~1 us against ~5 us for numpy's
    dtype guessing and reductions); None sends anything else, errors included, down the general path."""
    allowed = _FLAT_TYPES.get(datatype.name)
    if allowed is None or not data:
        return None
    for value in data:
        if type(value) not in allowed:
            return None
    bounds = _FLAT_BOUNDS.get(datatype.name)
    if bounds is not None and (min(data) < bounds[0] or max(data) > bounds[1]):
        return None
    try:
        return np.array(data, dtype=datatype.numpy)
    except OverflowError:  # an integer too large for a double
        return None


def _check_depth(data: list[Any] | bigjson.Array, name: str) -> None:
    """Follows the first elements only: numpy refuses ragged data anyway, so this bounds its recursion."""
    depth, item = 1, data
    while item and isinstance(item[0], list | bigjson.Array):
        depth += 1
        item = item[0]
        if depth > MAX_NESTING_DEPTH:
            raise InvalidInput(f"JSON nesting depth exceeds the allowed limit ({MAX_NESTING_DEPTH}) in input {name}")
    if depth > MAX_RANK:
        raise InvalidInput(f"Could not parse input content - data of input {name} is nested {depth} deep, "
                           f"more than the {MAX_RANK} dimensions a tensor may have")


def _numeric(data: list[Any], datatype: Datatype, name: str) -> np.ndarray:
    """numpy guesses a dtype from the JSON values (one C pass); the guess tells what was sent."""
    target = datatype.numpy
    try:
        loose = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        # Ragged nesting: read in order, as OVMS (and the simdjson path) do; only the count must match.
        try:
            data = _flatten(data, name)
            loose = np.asarray(data)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(
                f"Could not parse input content - data of input {name} holds values that are not numbers"
            ) from None
    if loose.size == 0:
        return loose.astype(target)
    kind = loose.dtype.kind
    if kind not in datatype.kinds:
        if target.kind in "iu" and kind in "fO":
            # A mix beyond int64 (e.g. 2**63 and 1) makes numpy guess float64: convert exactly instead.
            return _exact_integers(data, datatype, name)
        raise InvalidInput(
            f"Could not parse input content - data of input {name} holds values that are not {_kind_word(datatype)}"
        )
    return _in_range(loose, datatype, name)


def _in_range(loose: np.ndarray, datatype: Datatype, name: str) -> np.ndarray:
    """`loose` (numbers of the datatype's kind, any width) as the datatype, refusing values it cannot hold."""
    target = datatype.numpy
    if target.kind in "iu":
        if loose.size and not np.can_cast(loose.dtype, target):
            low, high = _INT_RANGES[datatype.name]
            smallest, largest = _extremes(loose)
            if int(smallest) < low or int(largest) > high:
                raise InvalidInput(_out_of_range(datatype, name, low, high))
    else:
        limit = _FLOAT_OVERFLOW.get(datatype.name)
        if limit is not None and loose.size:
            # Values that would round to +-inf are refused (JSON itself cannot carry inf).
            smallest, largest = _extremes(loose)
            if largest >= limit or smallest <= -limit:
                finfo = np.finfo(target)
                raise InvalidInput(_out_of_range(datatype, name, -float(finfo.max), float(finfo.max)))
    return loose.astype(target, copy=False)


def _extremes(array: np.ndarray) -> tuple[Any, Any]:
    """(min, max): Python's builtins for small arrays, where each numpy reduction costs ~1.4 us."""
    if array.size <= 64:
        values = array.ravel().tolist()
        return min(values), max(values)
    return array.min(), array.max()


def _flatten(data: list[Any], name: str) -> list[Any]:
    """Nested lists of any shape, in order, as one flat list."""
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= MAX_NESTING_DEPTH:
                    raise InvalidInput(
                        f"JSON nesting depth exceeds the allowed limit ({MAX_NESTING_DEPTH}) in input {name}"
                    )
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _exact_integers(data: list[Any], datatype: Datatype, name: str) -> np.ndarray:
    """The slow path, element by element: only for integers beyond int64, floats or junk."""
    values = np.array(data, dtype=object).reshape(-1).tolist()
    low, high = _INT_RANGES[datatype.name]
    if not all(type(v) is int for v in values):
        if any(type(v) is float and _too_large_literal(v, low, high) for v in values):
            raise InvalidInput(_out_of_range(datatype, name, low, high))
        raise InvalidInput(f"Could not parse input content - data of input {name} holds values that are not integers")
    if min(values) < low or max(values) > high:
        raise InvalidInput(_out_of_range(datatype, name, low, high))
    return np.array(values, dtype=datatype.numpy)


def _too_large_literal(value: float, low: int, high: int) -> bool:
    """orjson reads integer literals beyond 64 bits as floats (-2**63-1 becomes -2**63.0): such a
    float is "out of range", not "not an integer"."""
    return value.is_integer() and (not low <= value <= high or value <= -(2**63) or value >= 2**64)


def _out_of_range(datatype: Datatype, name: str, low: float, high: float) -> str:
    return f"Value out of range for {datatype.name} in input {name} (allowed {low}..{high})"


def _kind_word(datatype: Datatype) -> str:
    if datatype.name == "BOOL":
        return "booleans (true/false)"
    return "integers" if datatype.numpy.kind in "iu" else "numbers"


def _flatten_strings(data: list[Any], name: str) -> list[str]:
    flat = _flatten(data, name)
    for item in flat:
        if not isinstance(item, str):
            raise InvalidInput(f"Could not parse input content - BYTES data of input {name} must be strings")
    return flat


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
