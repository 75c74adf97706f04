"""Runs one request through a compiled pipeline: nodes start as soon as their inputs are ready.

Rules:
- A node instance is (node, key): key holds the branch index of every demultiplexer it runs
  inside. A demultiplexer's outputs are split along dim 0 (views, no copy) into one instance
  per branch; a gathering node (gather_from_node, and the response for the levels still
  open) stacks the branches into one buffer (the one copy gathering needs).
- DL nodes go through the same Servable.infer as direct requests. Their outputs are views into
  the infer request's memory (a Hold counts who still reads them), passed to the next node
  without a copy when it starts right away. Never wait for a slot while holding one: an
  output is copied when its consumer still waits for other inputs, and a node whose model
  has no idle infer request copies its inputs and lets them go before it waits. The last
  outputs reach the response as views and are released once sent (PipelineResult.release).
- Custom nodes run inline or on their thread pool (custom.py); their outputs may alias their
  inputs, so those inputs stay held as long as the outputs are.
- Any failure fails the request with a message naming the node; nodes already running finish
  and release their memory (nothing is cancelled half-way). A demultiplexer with 0 results
  aborts the run with NoResults (the handler answers 204, as OVMS).
Knows servables and numpy, never HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Coroutine
from time import perf_counter
from typing import Any

import numpy as np

from fastserve.errors import FastServeError, InvalidInput
from fastserve.models.servable import InferResult
from fastserve.pipelines.custom import check_outputs, execute_counted
from fastserve.pipelines.custom import executor as custom_executor
from fastserve.pipelines.graph import CUSTOM_NODE, MODEL_NODE, REQUEST_NODE, Compiled, RNode
from fastserve.pipelines.results import Hold, NoResults, PipelineResult, drop
from fastserve.triton.stats import count_success
from fastserve.v2.validate import check_shape

log = logging.getLogger("fastserve.pipelines")

# A dynamic demultiplexer may fan out to at most this many branches (OVMS caps a fixed
# demultiply_count at 10000); each branch costs an instance object and a scheduling step.
MAX_BRANCHES = 10_000
__all__ = ["MAX_BRANCHES", "NoResults", "PipelineResult", "run_pipeline"]


class Inst:
    __slots__ = ("node", "key", "pending", "args", "holds", "views", "started")

    def __init__(self, node: RNode, key: tuple[int, ...], pending: int) -> None:
        self.node = node
        self.key = key
        self.pending = pending
        self.args: list[Any] = [None] * node.slots  # input arrays, or gather buffers
        self.holds: list[Hold] = []
        self.views: list[int] = []  # slots holding views of memory in self.holds
        self.started = 0.0  # perf_counter() when a DL node's inference was asked for (its model's statistics)


def run_pipeline(
    compiled: Compiled, arrays: list[np.ndarray], wanted: list[int]
) -> PipelineResult | Awaitable[PipelineResult]:
    """Execute with the bound request arrays; a result now when every node ran inline, else an awaitable."""
    return Run(compiled, wanted).start(arrays)


class Run:
    __slots__ = ("compiled", "nodes", "wanted", "insts", "counts", "ready", "error", "result", "future", "tasks",
                 "started")

    def __init__(self, compiled: Compiled, wanted: list[int]) -> None:
        self.compiled = compiled
        self.nodes = compiled.nodes
        self.wanted = wanted
        self.insts: dict[tuple[int, tuple[int, ...]], Inst] = {}
        self.counts: dict[tuple[int, tuple[int, ...]], int] = {}  # (demultiplexer, key) -> branches
        self.ready: deque[Inst] = deque()
        self.error: FastServeError | None = None
        self.result: PipelineResult | None = None
        self.future: asyncio.Future[PipelineResult] | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, arrays: list[np.ndarray]) -> PipelineResult | Awaitable[PipelineResult]:
        self.started = perf_counter()  # the graph's run is the pipeline's compute_infer (Triton statistics)
        request = Inst(self.nodes[0], (), 0)
        self._complete(request, list(arrays), [])
        self._pump()
        if self.error is not None:
            raise self.error
        if self.result is not None:
            return self.result
        self.future = asyncio.get_running_loop().create_future()
        return self.future

    # Scheduling

    def _pump(self) -> None:
        ready = self.ready
        while ready:
            inst = ready.popleft()
            if self.error is not None:
                self._discard(inst)
                continue
            kind = inst.node.kind
            try:
                if kind == MODEL_NODE:
                    self._run_model(inst)
                elif kind == CUSTOM_NODE:
                    self._run_custom(inst)
                else:
                    self._finish(inst)
            except Exception as exc:  # a bug must fail this request, not hang it
                log.exception("pipeline %s: node %s failed", self.compiled.name, inst.node.name)
                self._fail(inst.node, FastServeError(f"internal error: {exc!r}"))
                self._discard(inst)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _instance(self, node: RNode, key: tuple[int, ...]) -> Inst:
        inst = self.insts.get((node.index, key))
        if inst is None:
            pending = node.slots
            if node.gather_depth:
                pending *= math.prod(self._gather_counts(node, key))
            inst = self.insts[(node.index, key)] = Inst(node, key, pending)
        return inst

    def _gather_counts(self, node: RNode, key: tuple[int, ...]) -> tuple[int, ...]:
        if node.gather_depth == 1:
            return (self.counts[(node.gather_from, key)],)
        return node.gather_counts  # nested levels: every count is fixed (config.py allows one dynamic alone)

    # Passing outputs on

    def _complete(self, inst: Inst, outputs: list[Any], holds: list[Hold]) -> None:
        """Deliver a finished instance's outputs to its consumers; `holds` is its own reference, dropped here."""
        node, key = inst.node, inst.key
        touched: list[tuple[Inst, int]] = []
        if node.demux is not None:
            try:
                count = self._count(node, outputs)
            except FastServeError as exc:
                self._fail(node, exc)
                count = 0
            if count == 0:
                if self.error is None:
                    self._fail(node, NoResults(node.name))
            else:
                self.counts[(node.index, key)] = count
                for branch in range(count):  # branch-major: branch 0 is complete before branch 1 starts
                    for consumer, slot, position in node.edges:
                        # [branch, ...]: a 0-d array view even when the slice is one element
                        self._deliver(consumer, slot, (*key, branch), outputs[position][branch, ...], holds, touched)
        else:
            for consumer, slot, position in node.edges:
                self._deliver(consumer, slot, key, outputs[position], holds, touched)
        if holds and touched:
            attached: set[int] = set()
            for target, slot in touched:
                if target.pending:  # it still waits for other inputs: it must not keep our memory
                    target.args[slot] = _copy(target.args[slot])
                    continue
                target.views.append(slot)
                if id(target) not in attached:
                    attached.add(id(target))
                    for hold in holds:
                        hold.count += 1
                    target.holds.extend(holds)
        drop(holds)

    def _deliver(self, index: int, slot: int, key: tuple[int, ...], array: Any, holds: list[Hold],
                 touched: list[tuple[Inst, int]]) -> None:
        if self.error is not None:
            return
        consumer = self.nodes[index]
        depth = consumer.gather_depth
        if depth:
            inst = self._instance(consumer, key[:-depth])
            buffer = inst.args[slot]
            if buffer is None:
                counts = self._gather_counts(consumer, inst.key)
                buffer = inst.args[slot] = np.empty((*counts, *array.shape), dtype=array.dtype)
            elif buffer.shape[depth:] != array.shape or buffer.dtype != array.dtype:
                self._fail(consumer, FastServeError(
                    f"cannot gather input {consumer.slot_names[slot]!r}: branches produced different shapes or "
                    f"types: {list(buffer.shape[depth:])} {buffer.dtype} and {list(array.shape)} {array.dtype}"))
                return
            buffer[key[-depth:]] = array
        else:
            inst = self._instance(consumer, key)
            inst.args[slot] = array
            if holds:
                touched.append((inst, slot))
        inst.pending -= 1
        if inst.pending == 0:
            del self.insts[(consumer.index, inst.key)]
            self.ready.append(inst)

    def _count(self, node: RNode, outputs: list[Any]) -> int:
        """The number of branches: dim 0 of every output, equal to demultiply_count when it is fixed."""
        count = -1
        for position in {p for _, _, p in node.edges}:
            shape = outputs[position].shape
            if not shape:
                raise self._error(node, "cannot demultiply a scalar output")
            if count == -1:
                count = shape[0]
            elif shape[0] != count:
                raise self._error(node, f"cannot demultiply outputs of different first dimensions ({count} and "
                                        f"{shape[0]})")
        if node.demux not in (None, -1) and count != node.demux:
            raise self._error(node, f"demultiply_count is {node.demux} but the first dimension is {count}")
        if count > MAX_BRANCHES:
            raise self._error(node, f"{count} results, more than the {MAX_BRANCHES} branches allowed")
        return count

    def _error(self, node: RNode, message: str) -> FastServeError:
        # The request node's shapes are the client's doing; any other node's are the server's.
        return InvalidInput(message) if node.kind == REQUEST_NODE else FastServeError(message)

    # Running nodes

    def _run_model(self, inst: Inst) -> None:
        servable = inst.node.servable
        if not getattr(servable, "inline", False):
            self._spawn(self._model_async(inst))
            return
        result = self._start_model(inst)
        if result is None:
            return
        if type(result) is InferResult:
            self._model_done(inst, result)
        else:  # no idle infer request after all: wait for one (inputs already let go)
            self._spawn(self._model_wait(inst, result))

    def _start_model(self, inst: Inst) -> Any:
        """Check the inputs and start the inference; None when it failed (the run is failed)."""
        node = inst.node
        inst.started = perf_counter()
        try:
            self._check(inst)
            if inst.holds and not _can_start(node.servable):
                self._detach(inst)
            return node.servable.infer(inst.args, node.wanted)
        except FastServeError as exc:
            self._node_failed(inst, exc)
            return None

    async def _model_async(self, inst: Inst) -> None:
        # The idle check in _start_model and the slot grab in Servable.infer run in this one step.
        result = self._start_model(inst)
        if result is not None:
            await self._model_wait(inst, result)

    async def _model_wait(self, inst: Inst, pending: Any) -> None:
        try:
            result = pending if type(pending) is InferResult else await pending
        except FastServeError as exc:
            self._node_failed(inst, exc)
            return
        except Exception as exc:
            log.exception("pipeline %s: node %s failed", self.compiled.name, inst.node.name)
            self._node_failed(inst, FastServeError(f"internal error: {exc!r}"))
            return
        self._model_done(inst, result)
        self._pump()

    def _node_failed(self, inst: Inst, exc: FastServeError) -> None:
        stats = getattr(inst.node.servable, "stats", None)
        if stats is not None:
            stats.fail(inst.started)
        self._fail(inst.node, exc)
        self._discard(inst)

    def _model_done(self, inst: Inst, result: Any) -> None:
        stats = getattr(inst.node.servable, "stats", None)  # a DL node's inference counts for its model too
        if stats is not None:
            count_success(stats, inst.args, result, inst.started, inst.started)
        self._discard(inst)  # its inputs have been read by the inference
        if self.error is not None:
            result.release()
            return
        self._complete(inst, result.arrays, [Hold(result)])

    def _run_custom(self, inst: Inst) -> None:
        node = inst.node
        library = node.library
        assert library is not None
        try:
            self._check(inst)
        except FastServeError as exc:
            self._fail(node, exc)
            self._discard(inst)
            return
        inputs = dict(zip(node.slot_names, inst.args, strict=True))
        if not library.inline:
            self._spawn(self._custom_async(inst, inputs))
            return
        try:
            returned = library.execute(inputs, node.params)
        except Exception as exc:
            returned = exc
        self._custom_done(inst, returned)

    async def _custom_async(self, inst: Inst, inputs: dict[str, Any]) -> None:
        library = inst.node.library
        assert library is not None
        loop = asyncio.get_running_loop()
        try:
            returned = await loop.run_in_executor(
                custom_executor(), execute_counted, library.execute, inputs, inst.node.params)
        except Exception as exc:
            returned = exc
        self._custom_done(inst, returned)
        self._pump()

    def _custom_done(self, inst: Inst, returned: Any) -> None:
        node = inst.node
        if self.error is not None:
            self._discard(inst)
            return
        try:
            outputs = check_outputs(node.library, node.out_names, node.out_specs, returned)
        except FastServeError as exc:
            self._fail(node, exc)
            self._discard(inst)
            return
        holds, inst.holds = inst.holds, []
        self._complete(inst, outputs, holds)  # outputs may be views of the inputs: their holds carry over

    def _finish(self, inst: Inst) -> None:
        args = inst.args
        self.result = PipelineResult([args[i] for i in self.wanted], inst.holds)
        self.result.infer_us = (perf_counter() - self.started) * 1e6
        inst.holds = []
        if self.future is not None:
            if self.future.done():  # cancelled (shutdown): nobody will send it
                self.result.release()
            else:
                self.future.set_result(self.result)

    # Memory and failures

    def _check(self, inst: Inst) -> None:
        for slot, spec in enumerate(inst.node.checks):
            if spec is not None:
                check_shape(inst.args[slot].shape, spec)

    def _detach(self, inst: Inst) -> None:
        """Copy the inputs that are views of other nodes' memory, and let that memory go."""
        for slot in inst.views:
            inst.args[slot] = _copy(inst.args[slot])
        inst.views = []
        self._discard(inst)

    def _discard(self, inst: Inst) -> None:
        holds, inst.holds = inst.holds, []
        drop(holds)

    def _fail(self, node: RNode, exc: FastServeError) -> None:
        if self.error is not None:
            return
        if not isinstance(exc, NoResults):
            where = "the request" if node.kind == REQUEST_NODE else f"node {node.name}"
            exc = FastServeError(f"Pipeline {self.compiled.name}: {where}: {exc.message}", exc.status, exc.headers)
        self.error = exc
        if self.future is not None and not self.future.done():
            self.future.set_exception(exc)


def _can_start(servable: Any) -> bool:
    """An infer request is free now, so infer() takes it without waiting (Servable's pool).

    Not with a Batcher in front (infer is not run): the batch may wait for another request's slot.
    """
    pool = getattr(servable, "pool", None)
    if pool is None or not pool.idle or pool.waiters:
        return False
    run = getattr(servable, "run", None)
    return run is None or servable.infer == run


def _copy(array: Any) -> Any:
    return np.array(array, copy=True)
