"""Plain data passed between the codec, the handlers and the models: no logic, no I/O.

TensorSpec describes a model input or output without naming OpenVINO, so the codec can
validate requests against a model it never imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastserve.v2.datatypes import Datatype

# A dimension bound: (min, max) with max -1 for unbounded; a static dim is (n, n).
Dim = tuple[int, int]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: Datatype | None  # None: an OpenVINO type with no KServe name (bf16, u4, ...)
    type_name: str  # OpenVINO's element type name, for messages about unmapped types
    dims: tuple[Dim, ...] | None  # None: dynamic rank
    index: int = 0  # position among the model's inputs or outputs

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    @property
    def metadata_shape(self) -> list[int]:
        """The shape as OVMS reports it: every non-static dim, ranges included, as -1."""
        if self.dims is None:
            return [-1]
        return [lo if lo == hi else -1 for lo, hi in self.dims]

    @property
    def datatype_name(self) -> str:
        return self.datatype.name if self.datatype is not None else "INVALID"

    def describe_shape(self) -> str:
        """The shape as OVMS prints it in messages: (1,-1,[1~10])."""
        if self.dims is None:
            return "(...)"
        return "(" + ",".join(_dim_text(lo, hi) for lo, hi in self.dims) + ")"


def _dim_text(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    if lo <= 0 and hi == -1:
        return "-1"
    return f"[{lo}~{'inf' if hi == -1 else hi}]"


@dataclass(slots=True)
class InferInput:
    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    parameters: dict[str, Any]
    data: np.ndarray | None = None  # decoded tensor (JSON or binary numeric)
    raw: memoryview | None = None  # binary section of a BYTES input, still length-prefixed


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: follow the request-level binary_data_output
    parameters: dict[str, Any]


@dataclass(slots=True)
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None  # None: every model output
    binary_output: bool = False  # request-level parameters.binary_data_output
    raw_binary: memoryview | None = None  # Inference-Header-Content-Length: 0, the body is one input
    extra: dict[str, Any] = field(default_factory=dict)
