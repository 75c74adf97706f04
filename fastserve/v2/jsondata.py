"""JSON `data` -> numpy arrays: nested or flat lists of numbers, booleans or strings, checked
against the datatype (kind, range, nesting depth) and the declared shape.

Rules: model-agnostic and transport-neutral (gRPC's typed contents reuse the range checks).
Every problem is an InvalidInput naming the input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastserve.errors import InvalidInput
from fastserve.v2 import bf16, bigjson
from fastserve.v2.datatypes import BF16, BY_NAME, BYTES, Datatype

# numpy arrays have at most 64 dimensions (NPY_MAXDIMS); a longer shape could never be built.
MAX_RANK = 64
# Triton and OVMS both cap JSON nesting at 100; deeper `data` is refused before numpy sees it.
MAX_NESTING_DEPTH = 100
# Longest JSON `data` list decoded by the Python fast path (small_flat); longer ones go to numpy.
SMALL_FLAT = 64
# Both keyed by datatype name: a str hashes from cache, a numpy dtype does not.
# Float64 magnitudes from which a cast rounds to inf: the type's max plus half an ulp there.
_FLOAT_OVERFLOW = {"FP16": 65520.0, "FP32": float(2**128 - 2**103)}
_INT_RANGES = {
    name: (int(np.iinfo(name.lower()).min), int(np.iinfo(name.lower()).max))
    for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
}
# What the fast path needs per datatype name, in one lookup: the value types it accepts (bool is
# not an int here), the closed range the values must lie in (floats: within the overflow limits
# above, exclusive; FP64 has none: JSON cannot carry inf) and the numpy dtype.
FLAT_RULES: dict[str, tuple[frozenset[type], float, float, np.dtype]] = {
    "BOOL": (frozenset({bool}), False, True, BY_NAME["BOOL"].numpy),
    **{name: (frozenset({int}), low, high, BY_NAME[name].numpy) for name, (low, high) in _INT_RANGES.items()},
    **{
        name: (frozenset({int, float}), -math.nextafter(limit, 0), math.nextafter(limit, 0), BY_NAME[name].numpy)
        for name, limit in _FLOAT_OVERFLOW.items()
    },
    "FP64": (frozenset({int, float}), -math.inf, math.inf, BY_NAME["FP64"].numpy),
}


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def json_to_array(data: Any, datatype: Datatype, shape: tuple[int, ...], name: str) -> np.ndarray:
    """JSON `data` (flat or nested) -> an array of the datatype shaped as `shape`.

    Only the element count is checked against the shape, as the reference page says. Values
    must really be of the datatype's kind: no strings as numbers, no floats as integers, no
    numbers as booleans, integers within range (all 64 bits of INT64 and UINT64).
    """
    if type(data) is list and len(data) <= SMALL_FLAT:  # the common case: a short flat list
        array = small_flat(data, datatype.name)
        if array is not None and array.size == math.prod(shape):
            return array.reshape(shape)
    if datatype is BF16:  # numbers as FP32 (the same range), then rounded to BF16's bit patterns
        return bf16.from_float32(json_to_array(data, BY_NAME["FP32"], shape, name))
    if isinstance(data, bigjson.Array):  # from a large body: numbers go straight into a buffer
        _check_depth(data, name)  # the same nesting limits as below
        kind = datatype.numpy.kind
        flat = bigjson.tensor_from_array(data, kind) if kind in "fiu" else None
        if flat is not None:
            return sized(in_range(flat, datatype, name), element_count(shape), name).reshape(shape)
        data = data.as_list()  # anything else takes the general path and its messages
    if not isinstance(data, list):
        raise InvalidInput(f"Could not parse input content - data of input {name} must be an array")
    expected = element_count(shape)
    if datatype is BYTES:
        flat = _flatten_strings(data, name)
        array = np.array(flat, dtype=object)
    else:
        _check_depth(data, name)
        array = _numeric(data, datatype, name)
    return sized(array, expected, name).reshape(shape)


def sized(array: np.ndarray, expected: int, name: str) -> np.ndarray:
    if array.size != expected:
        raise InvalidInput(
            f"Invalid number of values in tensor proto container - Expected: {expected} values; "
            f"Actual: {array.size} values; input name: {name}"
        )
    return array


def small_flat(data: list[Any], type_name: str) -> np.ndarray | None:
    """A short flat list of the right kind of values, checked in Python (~1 us against ~5 us for numpy's
    dtype guessing and reductions); None sends anything else, errors included, down the general path."""
    rules = FLAT_RULES.get(type_name)
    if rules is None or not data:
        return None
    return flat_array(data, *rules)


def flat_array(
    data: list[Any], allowed: frozenset[type], low: float, high: float, dtype: np.dtype
) -> np.ndarray | None:
    """small_flat with its datatype's FLAT_RULES given (the REST fast path holds them per input)."""
    for value in data:
        if type(value) not in allowed:
            return None
    if min(data) < low or max(data) > high:
        return None
    try:
        return np.array(data, dtype=dtype)
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
        raise InvalidInput(
            f"Could not parse input content - data of input {name} is nested {depth} deep, "
            f"more than the {MAX_RANK} dimensions a tensor may have"
        )


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
    return in_range(loose, datatype, name)


def in_range(loose: np.ndarray, datatype: Datatype, name: str) -> np.ndarray:
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
