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
from fastserve.v2.jsondata import FLAT_TYPES, SMALL_FLAT, small_flat
from fastserve.v2.types import Dim, InferInput, InferRequest, TensorSpec

# Decoded, bound: what the fast path hands back.
Prepared = tuple[InferRequest, list[np.ndarray]]
# One input the fast path can take: its spec, datatype name and dims (all static or ranged).
_Entry = tuple[TensorSpec, str, tuple[Dim, ...]]
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
            if datatype is None or spec.dims is None or datatype.name not in FLAT_TYPES:
                return None
            entries[spec.name] = (spec, datatype.name, spec.dims)
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
            spec, type_name, dims = entry
            if arrays[spec.index] is not None or item["datatype"] != type_name:
                return None  # a repeated input, or another datatype: the general path says so
            shape = item["shape"]
            if type(shape) is not list or len(shape) != len(dims):
                return None
            for value, (low, high) in zip(shape, dims, strict=True):
                if type(value) is not int or value < low or (high != -1 and value > high):
                    return None
            data = item["data"]
            if type(data) is not list or not 0 < len(data) <= SMALL_FLAT or len(data) != math.prod(shape):
                return None
            array = small_flat(data, type_name)
            if array is None:
                return None
            dims_given = tuple(shape)
            array = array.reshape(dims_given)
            arrays[spec.index] = array
            inputs.append(InferInput(spec.name, spec.datatype, dims_given, {}, array))  # type: ignore[arg-type]
        return InferRequest(request_id, {}, inputs, None, False), arrays

