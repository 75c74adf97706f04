"""The one inference path: find the target, bind the inputs, select the outputs, run, hand back.

Rules: knows the repository, the v2 request types and the target shape (core/target.py); never
HTTP or protobuf. A transport decodes its wire format into an InferRequest, calls `target()`
and `infer()`, and encodes the Outcome; errors are raised as FastServeErrors, which each
transport maps to its own statuses in one place. `infer()` answers now when it can (an inline
model, a pipeline of inline nodes) and with an awaitable only when it has to wait, so the
common small request creates no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from time import perf_counter
from typing import Any

import numpy as np

from fastserve.core.admission import LOOP_QUEUE, LoopQueue
from fastserve.core.target import Result, Target
from fastserve.core.trace import Trace
from fastserve.errors import FastServeError, ModelNotFound
from fastserve.models.repository import Repository
from fastserve.models.slots import InferResult
from fastserve.pipelines.results import NoResults, PipelineResult
from fastserve.pipelines.target import PipelineTarget
from fastserve.triton.stats import count_success
from fastserve.v2 import images
from fastserve.v2.encode import select_outputs
from fastserve.v2.images import INLINE_IMAGE_BYTES
from fastserve.v2.types import InferRequest, TensorSpec

# Results that are there at once; anything else a target returns is an awaitable of one.
_READY = frozenset((InferResult, PipelineResult))


class Outcome:
    """A finished inference: the selected outputs and their arrays (result None: no content,
    a demultiplexer found nothing). The transport encodes it, then calls result.release()."""

    __slots__ = ("target", "decoded", "selected", "result")

    def __init__(self, target: Target, decoded: InferRequest, selected: list[tuple[TensorSpec, bool]],
                 result: Result | None) -> None:
        self.target = target
        self.decoded = decoded
        self.selected = selected
        self.result = result


class InferenceCore:
    def __init__(self, repository: Repository, loop_queue: LoopQueue = LOOP_QUEUE) -> None:
        self.repository = repository
        self.loop_queue = loop_queue

    def admit(self, target: Target) -> None:
        """Before decoding: an inline target's request joins the loop's queue (core/admission.py),
        or Overloaded (503, RESOURCE_EXHAUSTED) when the queue is full; async targets queue per version."""
        if target.inline:
            try:
                self.loop_queue.enter(target.name)
            except FastServeError:
                target.stats.fail(perf_counter())
                raise

    def target(self, model: str, version: int | None) -> Target:
        """OVMS's lookup order: a model version, then a pipeline (whose version is ignored)."""
        try:
            return self.repository.get(model, version)
        except ModelNotFound:
            return self.pipeline(model)

    def pipeline(self, name: str) -> PipelineTarget:
        """ModelNotFound when no pipeline has the name either."""
        pipelines = self.repository.pipelines
        pipeline = pipelines.get(name) if pipelines is not None else None
        if pipeline is None:
            raise ModelNotFound()
        return pipeline.target(self.repository)

    def infer(self, target: Target, decoded: InferRequest, trace: Trace | None = None,
              arrays: list[np.ndarray] | None = None) -> Outcome | Awaitable[Outcome]:
        """`arrays`: the request already bound (a transport's fast path, e.g. v2/fastjson.py)."""
        started = perf_counter()  # the statistics' start (fastserve/triton/stats.py): always kept
        if trace is not None and type(target) is not PipelineTarget:
            trace.target = target  # model versions have metric series; pipelines none (as today)
        try:
            if arrays is None:
                if target.image_bytes(decoded) > INLINE_IMAGE_BYTES:
                    return self._off_loop(target, decoded, trace, started)  # big JPEG/PNG decodes leave the loop
                arrays = target.bind(decoded)
            return self._run(target, decoded, arrays, trace, started)
        except FastServeError:
            target.stats.fail(started)
            raise

    def _run(self, target: Target, decoded: InferRequest, arrays: list[np.ndarray],
             trace: Trace | None, started: float) -> Outcome | Awaitable[Outcome]:
        every = target.every_output if decoded.outputs is None else None
        if every is not None:  # every output, as most requests ask: the selection made at load time
            selected, wanted = every[decoded.binary_output]
        else:
            selected = select_outputs(decoded, target.outputs)
            wanted = [spec.index for spec, _ in selected]
        bound = perf_counter()
        if trace is not None:
            trace.decoded = bound
        try:
            result: Any = target.infer(arrays, wanted)
        except NoResults:
            return Outcome(target, decoded, selected, None)
        if type(result) in _READY:
            if trace is not None:
                trace.record(result.wait_us, result.infer_us)
            count_success(target.stats, arrays, result, started, bound)
            return Outcome(target, decoded, selected, result)
        return _later(target, decoded, selected, result, trace, arrays, started, bound)

    async def _off_loop(self, target: Target, decoded: InferRequest, trace: Trace | None,
                        started: float) -> Outcome:
        loop = asyncio.get_running_loop()
        try:
            arrays = await loop.run_in_executor(images.executor(), target.bind, decoded)
            outcome = self._run(target, decoded, arrays, trace, started)
        except FastServeError:
            target.stats.fail(started)
            raise
        return outcome if type(outcome) is Outcome else await outcome  # type: ignore[misc]


async def _later(target: Target, decoded: InferRequest, selected: list[tuple[TensorSpec, bool]],
                 pending: Awaitable[Result], trace: Trace | None, arrays: list[np.ndarray], started: float,
                 bound: float) -> Outcome:
    try:
        result = await pending
    except NoResults:
        return Outcome(target, decoded, selected, None)
    except FastServeError:
        target.stats.fail(started)
        raise
    if trace is not None:
        trace.record(result.wait_us, result.infer_us)
    count_success(target.stats, arrays, result, started, bound)
    return Outcome(target, decoded, selected, result)
