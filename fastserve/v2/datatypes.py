"""THE datatype table: KServe v2 name <-> numpy dtype <-> OpenVINO element type name.

Every codec reads from here, so a datatype is added in one place. OpenVINO is not imported:
element types are compared by their `get_type_name()` strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Datatype:
    name: str  # KServe v2 name, e.g. "FP32"
    numpy: np.dtype  # object dtype for BYTES
    ov_name: str  # openvino Type.get_type_name() lower-cased, e.g. "f32" ("String" -> "string")
    itemsize: int  # bytes per element on the wire; 0 for BYTES (length-prefixed)
    kinds: str  # numpy dtype kinds accepted from JSON data for this type


_TABLE = (
    Datatype("BOOL", np.dtype(np.bool_), "boolean", 1, "b"),
    Datatype("UINT8", np.dtype(np.uint8), "u8", 1, "iu"),
    Datatype("UINT16", np.dtype(np.uint16), "u16", 2, "iu"),
    Datatype("UINT32", np.dtype(np.uint32), "u32", 4, "iu"),
    Datatype("UINT64", np.dtype(np.uint64), "u64", 8, "iu"),
    Datatype("INT8", np.dtype(np.int8), "i8", 1, "iu"),
    Datatype("INT16", np.dtype(np.int16), "i16", 2, "iu"),
    Datatype("INT32", np.dtype(np.int32), "i32", 4, "iu"),
    Datatype("INT64", np.dtype(np.int64), "i64", 8, "iu"),
    Datatype("FP16", np.dtype(np.float16), "f16", 2, "iuf"),
    Datatype("FP32", np.dtype(np.float32), "f32", 4, "iuf"),
    Datatype("FP64", np.dtype(np.float64), "f64", 8, "iuf"),
    # numpy has no bfloat16: fastserve holds BF16 tensors as their raw 16-bit patterns (uint16),
    # from the wire to OpenVINO's bf16 tensor and back; JSON numbers are converted (bf16.py).
    Datatype("BF16", np.dtype(np.uint16), "bf16", 2, "iuf"),
    Datatype("BYTES", np.dtype(object), "string", 0, "USO"),
)

BY_NAME: dict[str, Datatype] = {d.name: d for d in _TABLE}
BY_OV: dict[str, Datatype] = {d.ov_name: d for d in _TABLE}
BY_NUMPY: dict[np.dtype, Datatype] = {d.numpy: d for d in _TABLE if d.name not in ("BYTES", "BF16")}
BYTES = BY_NAME["BYTES"]
BF16 = BY_NAME["BF16"]


def from_ov(type_name: str) -> Datatype | None:
    """The v2 datatype of an OpenVINO element type name, None when v2 has no such type (u4, nf4, ...)."""
    return BY_OV.get(type_name.lower())


def from_numpy(dtype: np.dtype) -> Datatype:
    """The v2 datatype of a numpy array; unicode/bytes/object arrays are BYTES."""
    found = BY_NUMPY.get(dtype)
    if found is not None:
        return found
    if dtype.kind in "USO":
        return BYTES
    raise KeyError(f"no KServe datatype for numpy {dtype}")
