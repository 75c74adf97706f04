"""A compiled pipeline in the shape of the core's inference target (fastserve/core/target.py)."""

from __future__ import annotations

from collections.abc import Awaitable

import numpy as np

from fastserve.pipelines.binding import bind_pipeline_inputs, image_bytes
from fastserve.pipelines.executor import run_pipeline
from fastserve.pipelines.graph import Compiled
from fastserve.pipelines.results import PipelineResult
from fastserve.triton.stats import InferStats
from fastserve.v2.types import InferRequest


class PipelineTarget:
    """A compiled pipeline as a Target. NoResults (a demultiplexer found nothing) escapes infer."""

    __slots__ = ("compiled", "name", "version_text", "inputs", "outputs", "metadata", "stats")
    every_output = None  # outputs are selected per request (core/target.py)
    fast_json = None  # no REST fast path (v2/fastjson.py): pipelines bind by their own rules
    every_json = None  # nor a prebuilt encoder (v2/encode.py's EveryJson)
    inline = False  # not admitted to the loop's queue (core/admission.py): their model nodes queue per version

    def __init__(self, compiled: Compiled, stats: InferStats | None = None) -> None:
        self.compiled = compiled
        self.name = compiled.name
        self.version_text = compiled.version_text
        self.inputs = compiled.inputs
        self.outputs = compiled.outputs
        self.metadata = compiled.metadata
        # The served pipeline's, kept across re-binds to reloaded model versions.
        self.stats = InferStats() if stats is None else stats

    def bind(self, decoded: InferRequest) -> list[np.ndarray]:
        return bind_pipeline_inputs(decoded, self.compiled)

    def image_bytes(self, decoded: InferRequest) -> int:
        return image_bytes(decoded, self.compiled)

    def infer(self, arrays: list[np.ndarray], wanted: list[int]) -> PipelineResult | Awaitable[PipelineResult]:
        return run_pipeline(self.compiled, arrays, wanted)
