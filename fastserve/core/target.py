"""What the core runs a request on: a model version (models/servable.py's Servable) or a DAG
pipeline (pipelines/target.py's PipelineTarget), behind one shape, so there is one inference
path for both. Protocols (and every_output, the selection a model version prepares once);
inference.py knows the two concrete targets just to tell a pipeline (no metric series) and a
result that is there at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from fastserve.triton.stats import InferStats
from fastserve.v2.encode import EveryJson
from fastserve.v2.types import InferRequest, TensorSpec

# (selected outputs, their indexes) for binary_data_output False and True
EveryOutput = tuple[tuple[list[tuple[TensorSpec, bool]], list[int]], tuple[list[tuple[TensorSpec, bool]], list[int]]]


def every_output(outputs: dict[str, TensorSpec]) -> EveryOutput:
    """What v2/encode.select_outputs returns for a request naming no outputs (all, sorted by name)."""
    ordered = [outputs[name] for name in sorted(outputs)]
    indexes = [spec.index for spec in ordered]
    return ([(spec, False) for spec in ordered], indexes), ([(spec, True) for spec in ordered], list(indexes))


class Result(Protocol):
    """Output arrays in the order asked for, timings, and the duty to release them once encoded."""

    arrays: list[np.ndarray]
    wait_us: float
    infer_us: float

    def release(self) -> None: ...


class Target(Protocol):
    name: str
    version_text: str  # the version a response names ("1"; pipelines "1" as OVMS)
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    stats: InferStats  # Triton's statistics, filled by the core for every transport
    inline: bool  # runs on the event-loop thread, so its requests queue in the loop (core/admission.py)
    # select_outputs for a request that names no outputs, by its binary_data_output (False, True), with
    # the output indexes: built once (read-only, shared by every request); None: select per request.
    every_output: EveryOutput | None
    # The REST fast path (v2/fastjson.py): body -> (decoded, bound arrays) or None; None: no fast path.
    fast_json: Callable[[bytes | bytearray], tuple[InferRequest, list[np.ndarray]] | None] | None
    # The REST encoder of every_output's JSON selection (v2/encode.py's EveryJson); None: encode_selected.
    every_json: EveryJson | None

    def bind(self, decoded: InferRequest) -> list[np.ndarray]:
        """The request's arrays in input order; InvalidInput when they do not fit."""
        ...

    def image_bytes(self, decoded: InferRequest) -> int:
        """Encoded JPEG/PNG bytes the request carries (big ones are decoded off the loop)."""
        ...

    def infer(self, arrays: list[np.ndarray], wanted: list[int]) -> Result | Awaitable[Result]: ...
