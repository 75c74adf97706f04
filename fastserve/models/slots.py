"""An infer request's slot and the result it lends out: the per-request pieces of a servable.

Rules: knows OpenVINO and numpy only. InferResult's arrays are views into the slot's memory;
release() gives the slot back to its pool once the caller has encoded (and sent) them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset15 as ops

from fastserve.models.pool import SlotPool
from fastserve.v2.datatypes import from_ov
from fastserve.v2.types import TensorSpec

try:
    # The binding's own synchronous infer, with share_outputs: the Python wrapper's infer() also
    # copies every output into a dict that we throw away (measured, 1 thread: 15.2 -> 11.8 us
    # CPU for a [1,4] add; 1779 -> 776 us for a 4 MiB output). Outputs are read as views below.
    from openvino._pyopenvino import InferRequest as _BoundRequest

    def infer_sync(request: ov.InferRequest) -> None:
        _BoundRequest.infer(request, {}, True, False)

except (ImportError, AttributeError):  # another OpenVINO layout: the public API

    def infer_sync(request: ov.InferRequest) -> None:
        request.infer()


def infer_public(request: ov.InferRequest) -> None:
    """For string outputs: the binding copies them into its dict anyway, and crashed on empty ones."""
    request.infer()


def infer_waiting(request: ov.InferRequest) -> None:
    """A synchronous inference through the async path: the one that reports failures on a one-thread model
    (one_thread_hides_failures). Its callback sees no loop (loading only), so it wakes nobody."""
    request.start_async()
    request.wait()


def runs_one_thread(compiled: ov.CompiledModel) -> bool:
    """One stream of one thread: the CPU plugin then runs a synchronous infer() on its own fast path."""
    try:
        streams, threads = (int(compiled.get_property(key)) for key in ("NUM_STREAMS", "INFERENCE_NUM_THREADS"))
    except (RuntimeError, TypeError, ValueError):  # a device without these properties
        return False
    return streams == threads == 1


@functools.cache
def one_thread_hides_failures() -> bool:
    """Whether this OpenVINO loses the error of a failed synchronous infer() on a one-stream, one-thread model.

    2026.4 does: its CPU plugin runs such an infer() through CPUStreamsExecutor::execute, whose task queue
    swallows the exception (`catch (...) {}`) and keeps the failed task at its head. infer() returns as if
    it had worked, and every later infer() from that thread, on any request of the model, first re-runs the
    failed task (which fails again while that request keeps its inputs) and returns without running its own:
    its caller reads the outputs of that request's previous inference. Checked once per process on a model
    that fails on purpose; its second, valid run empties that queue again.
    """
    x = ops.parameter(ov.PartialShape([-1]), ov.Type.f32, name="x")
    y = ops.reshape(x, ops.constant(np.array([2], np.int64)), special_zero=False)  # fails unless x has 2 values
    try:
        compiled = ov.Core().compile_model(ov.Model([y.output(0)], [x], "failure_probe"), "CPU",
                                           {"NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1})
    except RuntimeError:  # no CPU plugin: nothing runs on its fast path
        return False
    request = compiled.create_infer_request()
    try:
        request.infer({0: np.zeros(3, np.float32)})
        hidden = True
    except RuntimeError:
        hidden = False
    request.infer({0: np.zeros(2, np.float32)})
    return hidden


def fully_static(model: ov.Model) -> bool:
    """Every output of every op has a static shape. Then what fails in OpenVINO's infer (a shape that the
    data decides, e.g. a Reshape to an input's values) cannot happen, as the inputs are checked first, and
    one_thread_hides_failures has nothing to hide."""
    return all(out.get_partial_shape().is_static for op in model.get_ordered_ops() for out in op.outputs())


class Slot:
    """One OpenVINO infer request and what is bound to it."""

    __slots__ = ("request", "foreign", "views", "out_views", "keep", "future", "loop", "finish")

    def __init__(self, request: ov.InferRequest, inputs: int, outputs: int, finish: Callable[[Slot], None]) -> None:
        self.request = request
        self.foreign = [False] * inputs  # input i is a tensor we set over caller memory
        # numpy views of the request's own input tensors at their current shapes (None: fetch again),
        # and of outputs whose memory never moves: get_*_tensor(i).data costs ~3.5 us, a kept view nothing.
        self.views: list[np.ndarray | None] = [None] * inputs
        self.out_views: list[np.ndarray | None] = [None] * outputs
        self.keep: list[Any] = [None] * inputs  # caller arrays that must outlive the inference
        self.future: asyncio.Future[None] | None = None  # set while an async inference runs
        self.loop: asyncio.AbstractEventLoop | None = None
        self.finish = finish  # the servable's loop-side completion handler


class InferResult:
    """Output arrays (views into the slot's memory) and the duty to give the slot back."""

    __slots__ = ("arrays", "_slot", "_pool", "wait_us", "infer_us")
    batch_rows = -1  # one execution of its own (batcher members say how many rows theirs had)

    def __init__(self, arrays: list[np.ndarray], slot: Slot, pool: SlotPool[Slot], wait_us: float, infer_us: float):
        self.arrays = arrays
        self._slot: Slot | None = slot
        self._pool = pool
        self.wait_us = wait_us
        self.infer_us = infer_us

    def release(self) -> None:
        slot = self._slot
        if slot is not None:
            self._slot = None
            slot.keep[:] = [None] * len(slot.keep)
            self._pool.release(slot)


def tensor_spec(port: Any, index: int) -> TensorSpec:
    """Describe an OpenVINO port as plain data."""
    try:
        name = port.get_any_name()
    except RuntimeError:
        name = port.get_node().get_friendly_name()
    type_name = port.get_element_type().get_type_name()
    shape = port.get_partial_shape()
    dims = None
    if shape.rank.is_static:
        dims = tuple((d.get_length(), d.get_length()) if d.is_static else (d.get_min_length(), d.get_max_length())
                     for d in shape)
    return TensorSpec(name=name, datatype=from_ov(type_name), type_name=type_name, dims=dims, index=index)
