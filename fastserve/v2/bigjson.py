"""Large JSON request bodies: simdjson, with tensor `data` read straight into buffers.

Rules: only a faster route to the same decoded document. A ResNet-50 input as JSON (1x224x224x3
FP32, 2.95 MB) costs ~22 ms in orjson.loads plus ~14 ms for numpy to turn 150k Python floats in
nested lists into an array; simdjson parses it and copies the numbers of the `data` array into a
flat buffer of doubles or 64-bit integers in ~7 ms, with no Python object per element.

`parse` returns the document as orjson would, except that each input's `data` array stays a
simdjson Array for `tensor_from_array` to read; None when simdjson refuses the body, so the
caller parses it again with orjson and reports orjson's error. `tensor_from_array` returns None
for anything but numbers of the requested kind (booleans, strings, floats for an integer
type, values out of 64-bit range): the caller then takes the general path with `as_list()`,
which gives the usual error messages. Nested arrays are flattened in order and only the element
count is checked against the shape, as the reference page says (OVMS and Triton read nested
data the same way, and so does the orjson path in decode.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

# Below this a JSON head is parsed by orjson: for small documents it is as fast, and the whole
# document (ids, parameters) is built as Python objects either way.
MIN_BYTES = 64 * 1024

Array = simdjson.Array
_BUFFER_TYPES = {"d": np.float64, "i": np.int64, "u": np.uint64}


def parse(text: memoryview) -> dict[str, Any] | None:
    """The document, with `inputs[i].data` left as simdjson Arrays; None if simdjson refuses it."""
    try:
        root = simdjson.Parser().parse(text)  # a parser per body: its Arrays may outlive this call
    except (ValueError, UnicodeDecodeError, RuntimeError):  # RuntimeError: nesting beyond 1024
        return None
    if not isinstance(root, simdjson.Object):
        return None
    keys = list(root.keys())
    if len(set(keys)) != len(keys):
        return None  # a duplicate key: lookups here find its first value, orjson keeps the last
    doc: dict[str, Any] = {}
    for key in keys:  # items() would build every value as Python objects
        value = root[key]
        if key == "inputs" and isinstance(value, Array):
            inputs = [_input(item) for item in value]
            if None in inputs:
                return None
            doc[key] = inputs
        else:
            doc[key] = _plain(value)
    return doc


def _input(item: Any) -> Any:
    """One input as a dict with its `data` left lazy; None when it repeats a key (see above)."""
    if not isinstance(item, simdjson.Object):
        return _plain(item)
    keys = list(item.keys())
    if len(set(keys)) != len(keys):
        return None
    return {key: _plain(item[key]) if key != "data" else _data(item[key]) for key in keys}


def _data(value: Any) -> Any:
    return value if isinstance(value, Array) else _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, Array):
        return value.as_list()
    return value


def tensor_from_array(data: Any, kind: str) -> np.ndarray | None:
    """The flattened numbers of `data` as float64 (kind "f"), int64 ("i") or uint64 ("u"); None when
    they are not all numbers of that kind."""
    of_type = "d" if kind == "f" else kind
    try:
        buffer = data.as_buffer(of_type=of_type)
    except (TypeError, ValueError):
        return None
    return np.frombuffer(buffer, dtype=_BUFFER_TYPES[of_type])
