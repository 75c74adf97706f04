"""A model's fast path for the common JSON request, prepared once at load time.

Rules: takes the body of a JSON-only request, {"inputs": [{"name", "shape", "datatype",
"data"}, ...]} with an optional string "id", and gives back the decoded request together with
its bound arrays (decode and bind in one pass), or None for anything else: then the general
path (decode.py, then validate.py) runs from the start and raises its own exact errors. So
this module never raises and never decides an error; it accepts only what the general path
would accept as it is, and builds the same arrays. Knows TensorSpec, never OpenVINO.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from fastserve.v2 import bigjson
from fastserve.v2.jsondata import FLAT_RULES, SMALL_FLAT, flat_array
from fastserve.v2.types import Dim, InferInput, InferRequest, TensorSpec

# Decoded, bound: what the fast path hands back.
Prepared = tuple[InferRequest, list[np.ndarray]]
# One input the fast path can take: its spec, datatype name, dims (static or ranged), the shape as a
# list when every dim is static (else None) with its value count (-1 when outside 1..SMALL_FLAT: never
# taken here), and jsondata's rules for its values (small_flat's).
_Entry = tuple[TensorSpec, str, tuple[Dim, ...], list[int] | None, int, frozenset[type], float, float, np.dtype]
_ITEM_KEYS = frozenset(("name", "shape", "datatype", "data"))


class FastJson:
    """Callable on a body: (decoded request, arrays in input order) or None."""

    __slots__ = ("entries", "count")

    def __init__(self, entries: dict[str, _Entry]) -> None:
        self.entries = entries
        self.count = len(entries)

    @classmethod
    def build(cls, specs: Mapping[str, TensorSpec]) -> FastJson | None:
        """None when some input can never take this path (dynamic rank, BYTES, BF16, unmapped types)."""
        entries: dict[str, _Entry] = {}
        for spec in specs.values():
            datatype = spec.datatype
            rules = FLAT_RULES.get(datatype.name) if datatype is not None else None
            if rules is None or spec.dims is None:
                return None
            static = [low for low, _ in spec.dims] if all(low == high for low, high in spec.dims) else None
            count = math.prod(static) if static is not None else -1
            count = count if 0 < count <= SMALL_FLAT else -1
            entries[spec.name] = (spec, datatype.name, spec.dims, static, count, *rules)  # type: ignore[union-attr]
        return cls(entries) if entries else None

    def __call__(self, body: bytes | bytearray) -> Prepared | None:
        if len(body) >= bigjson.MIN_BYTES:
            return None  # large bodies have their own parser
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict:
            return None
        request_id = None
        if len(doc) != 1:
            request_id = doc.get("id")
            if len(doc) != 2 or type(request_id) is not str:
                return None
        raw_inputs = doc.get("inputs")
        if type(raw_inputs) is not list or len(raw_inputs) != self.count:
            return None
        entries = self.entries
        inputs = []
        arrays: list[Any] = [None] * self.count
        for item in raw_inputs:
            if type(item) is not dict or item.keys() != _ITEM_KEYS:
                return None
            name = item["name"]
            entry = entries.get(name) if type(name) is str else None
            if entry is None:
                return None
            spec, type_name, dims, static, count, allowed, low, high, dtype = entry
            if arrays[spec.index] is not None or item["datatype"] != type_name:
                return None  # a repeated input, or another datatype: the general path says so
            shape = item["shape"]
            if type(shape) is not list:
                return None
            if static is not None:
                if shape != static:  # equal lists; 1.0 and True equal 1, hence the type check
                    return None
                for dim in shape:
                    if type(dim) is not int:
                        return None
            else:
                if len(shape) != len(dims):
                    return None
                for dim, (least, most) in zip(shape, dims, strict=True):
                    if type(dim) is not int or dim < least or (most != -1 and dim > most):
                        return None
            data = item["data"]
            if type(data) is not list:
                return None
            if static is not None:
                if len(data) != count:  # the count of the static shape, known at load time
                    return None
            elif not 0 < len(data) <= SMALL_FLAT or len(data) != math.prod(shape):
                return None
            array = flat_array(data, allowed, low, high, dtype)
            if array is None:
                return None
            dims_given = tuple(shape)
            array.shape = dims_given  # a fresh array: reshaped in place
            arrays[spec.index] = array
            inputs.append(InferInput(spec.name, spec.datatype, dims_given, {}, array))  # type: ignore[arg-type]
        return InferRequest(request_id, {}, inputs, None, False), arrays

