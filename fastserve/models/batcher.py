"""Server-side dynamic batching: concurrent requests to one model version become one inference.

Rules: asyncio + numpy only, in front of a servable's `run(arrays, wanted)`; knows no HTTP,
JSON or OpenVINO. `Batcher.infer` keeps the servable's contract (`infer(arrays, wanted)` ->
awaitable InferResult, then `release()`), so handlers do not know batching exists.

Policy (greedy: never wait for nothing):
- Requests whose inputs have the same non-batch shapes and dtypes form a group; other
  requests (rank 0, inputs disagreeing on dim 0, 0 rows, more rows than a batch) run alone.
- While requests come one at a time (the last batch went out alone) and the model is idle, a
  request runs at once, as without batching; one arriving in the same iteration as it starts
  a group, and from then on every request is grouped until a batch goes out alone again.
- A new group is sent one loop iteration later (call_soon), with whatever arrived in that
  iteration, if fewer than `parallel` of our batches are running (the model's streams).
- While the model is busy the group keeps collecting until a running batch finishes, the group
  is full (`max_rows`), or its first request has waited `delay` (max_queue_delay_microseconds):
  then it is sent even if busy, so no request waits in the batcher longer than its delay.
- One np.concatenate per input name, one inference, and every member's outputs are slices of
  that inference's output arrays. The infer request goes back to its pool only when every
  member has released its slices (refcount), so zero-copy binary responses stay valid.
- A failure fails only the members of that batch, each with the error and the batch size.
- At most `max_queued` requests wait or run in the batcher; beyond it, 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from fastserve.errors import FastServeError, InferenceFailed, Overloaded
from fastserve.models.pool import LIMITS, RETRY_AFTER_SECONDS
from fastserve.models.servable import InferResult

log = logging.getLogger("fastserve.models")

RunFn = Callable[[list[np.ndarray], list[int]], "InferResult | Awaitable[InferResult]"]
GroupKey = tuple[tuple[tuple[int, ...], np.dtype], ...]


class BatchFailed(FastServeError):
    """The batch a request was part of failed; carries the original error's status."""


class _Member:
    __slots__ = ("arrays", "rows", "wanted", "future", "queued_at")

    def __init__(self, arrays: list[np.ndarray], rows: int, wanted: list[int], future: asyncio.Future) -> None:
        self.arrays = arrays
        self.rows = rows
        self.wanted = wanted
        self.future = future
        self.queued_at = time.perf_counter()


class _Group:
    """Requests of one shape key waiting to be sent as one batch."""

    __slots__ = ("key", "members", "rows", "deadline", "timer", "sent_at")

    def __init__(self, key: GroupKey, deadline: float) -> None:
        self.key = key
        self.members: list[_Member] = []
        self.rows = 0
        self.deadline = deadline  # loop.time() by which the first member must be sent
        self.timer: asyncio.TimerHandle | None = None
        self.sent_at = 0.0


class _Share:
    """One batch's InferResult, released when the last member releases its slices."""

    __slots__ = ("result", "count")

    def __init__(self, result: InferResult, count: int) -> None:
        self.result = result
        self.count = count

    def release_one(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.result.release()


class BatchedResult(InferResult):
    """One member's outputs: slices (views) of the batch's output arrays."""

    __slots__ = ("_share", "batch_rows")

    def __init__(self, arrays: list[np.ndarray], share: _Share, wait_us: float, infer_us: float,
                 batch_rows: int) -> None:
        self.arrays = arrays
        self._slot = None
        self._share: _Share | None = share
        self.wait_us = wait_us
        self.infer_us = infer_us
        self.batch_rows = batch_rows  # the batch's rows for its first member, 0 for the others (statistics)

    def release(self) -> None:
        share = self._share
        if share is not None:
            self._share = None
            share.release_one()


class Batcher:
    __slots__ = (
        "run", "outputs", "max_rows", "delay", "parallel", "max_queued", "name",
        "groups", "outstanding", "running", "tick_pending", "crowded", "alone_pending", "loop", "tasks",
        "batches", "batched_rows",
    )  # fmt: skip

    def __init__(self, run: RunFn, outputs: int, max_rows: int, delay_us: int, parallel: int = 1,
                 max_queued: int | None = None, name: str = "") -> None:
        self.run = run
        self.outputs = list(range(outputs))  # a batch asks for every output; members pick theirs
        self.max_rows = max(1, max_rows)
        self.delay = delay_us / 1e6
        self.parallel = max(1, parallel)
        self.max_queued = LIMITS.max_waiting if max_queued is None else max_queued
        self.name = name
        self.groups: dict[GroupKey, _Group] = {}  # insertion order: oldest group first
        self.outstanding = 0  # requests taken and not yet answered
        self.running = 0  # our batches inside run() that have not finished
        self.tick_pending = False
        self.crowded = False  # the last batch sent had company: batch every request
        self.alone_pending = False  # a request ran alone in this loop iteration
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[asyncio.Task] = set()
        self.batches = 0  # counters: inferences sent and the rows they carried
        self.batched_rows = 0

    # Requests (event loop)

    def infer(self, arrays: list[np.ndarray], wanted: list[int]) -> InferResult | Awaitable[InferResult]:
        first = arrays[0]
        rows = first.shape[0] if first.ndim else 0
        if not 0 < rows <= self.max_rows or any(a.ndim == 0 or a.shape[0] != rows for a in arrays):
            return self.run(arrays, wanted)  # cannot share a batch: runs alone, as without batching
        if self.outstanding >= self.max_queued:
            raise Overloaded(f"Too many requests waiting for model {self.name} ({self.outstanding} queued for "
                              f"batching)", RETRY_AFTER_SECONDS)
        loop = self.loop = asyncio.get_running_loop()
        if not (self.crowded or self.running or self.groups or self.alone_pending):
            return self._alone(loop, arrays, wanted)
        key = tuple((a.shape[1:], a.dtype) for a in arrays)
        group = self.groups.get(key)
        if group is not None and group.rows + rows > self.max_rows:
            self._send(group)  # this request does not fit: the group goes as it is
            group = None
        if group is None:
            group = self.groups[key] = _Group(key, loop.time() + self.delay)
            if not self.tick_pending:
                self.tick_pending = True
                loop.call_soon(self._tick)
        future: asyncio.Future[InferResult] = loop.create_future()
        group.members.append(_Member(arrays, rows, wanted, future))
        group.rows += rows
        self.outstanding += 1
        if group.rows == self.max_rows:
            self._send(group)
        return future

    def _alone(self, loop: asyncio.AbstractEventLoop, arrays: list[np.ndarray],
               wanted: list[int]) -> InferResult | Awaitable[InferResult]:
        """Idle model, and requests came one at a time lately: run this one now, at no batching cost.

        Requests arriving later in the same loop iteration form a group as usual, and then every
        request is batched again until a batch goes out alone."""
        self.alone_pending = True
        loop.call_soon(self._after_alone)
        self.batches += 1
        self.batched_rows += arrays[0].shape[0]
        self.running += 1
        try:
            result = self.run(arrays, wanted)
        except BaseException:
            self.running -= 1
            raise
        if type(result) is InferResult:
            self.running -= 1
            return result
        return self._alone_later(result)

    async def _alone_later(self, pending: Awaitable[InferResult]) -> InferResult:
        try:
            return await pending
        finally:
            self.running -= 1
            self._next()

    def _after_alone(self) -> None:
        self.alone_pending = False
        if self.groups:
            self.crowded = True  # others came in the same iteration

    def _tick(self) -> None:
        """One iteration after new groups formed: send them, unless the model is busy (then wait)."""
        self.tick_pending = False
        loop = self.loop
        assert loop is not None
        now = loop.time()
        for group in list(self.groups.values()):
            if group.timer is not None or self.groups.get(group.key) is not group:
                continue  # already waiting for its deadline, or sent meanwhile
            if self.running < self.parallel or group.deadline <= now:
                self._send(group)
            else:
                group.timer = loop.call_at(group.deadline, self._expire, group)

    def _expire(self, group: _Group) -> None:
        group.timer = None
        if self.groups.get(group.key) is group:
            self._send(group)

    def _next(self) -> None:
        """A batch finished: send the oldest waiting groups while the model has room."""
        while self.groups and self.running < self.parallel:
            self._send(next(iter(self.groups.values())))

    # Batches

    def _send(self, group: _Group) -> None:
        del self.groups[group.key]
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        members = group.members
        self.crowded = len(members) > 1
        group.sent_at = time.perf_counter()
        self.batches += 1
        self.batched_rows += group.rows
        self.running += 1
        try:
            if len(members) == 1:
                arrays = members[0].arrays
            else:
                arrays = [np.concatenate([m.arrays[i] for m in members]) for i in range(len(members[0].arrays))]
            result = self.run(arrays, self.outputs)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it fails this batch only
            self.running -= 1
            self._fail(group, exc)
            return
        if type(result) is InferResult:
            self.running -= 1
            self._deliver(group, result)
            return
        assert self.loop is not None
        task = self.loop.create_task(self._finish(group, result))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _finish(self, group: _Group, pending: Awaitable[InferResult]) -> None:
        try:
            result = await pending
        except BaseException as exc:
            self.running -= 1
            self._fail(group, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.running -= 1
            self._deliver(group, result)
        self._next()

    def _deliver(self, group: _Group, result: InferResult) -> None:
        outputs = result.arrays
        total = group.rows
        for index, out in enumerate(outputs):
            if out.ndim == 0 or out.shape[0] != total:
                result.release()
                self._fail(group, InferenceFailed(
                    f"model {self.name} cannot be batched: output {index} has shape {tuple(out.shape)} for a batch "
                    f"of {total} rows (batching needs outputs whose dim 0 is the batch)"
                ))
                return
        members = group.members
        self.outstanding -= len(members)
        share = _Share(result, len(members))
        sent_at, wait_us, infer_us = group.sent_at, result.wait_us, result.infer_us
        offset = 0
        executed = total  # the one execution is counted with the first member answered
        for member in members:
            end = offset + member.rows
            arrays = [outputs[i][offset:end] for i in member.wanted]
            offset = end
            if member.future.done():  # its caller has gone (cancelled)
                share.release_one()
                continue
            waited = (sent_at - member.queued_at) * 1e6 + wait_us
            member.future.set_result(BatchedResult(arrays, share, waited, infer_us, executed))
            executed = 0

    def _fail(self, group: _Group, exc: BaseException) -> None:
        members = group.members
        self.outstanding -= len(members)
        if isinstance(exc, FastServeError):
            status, message, headers = exc.status, exc.message, exc.headers
        else:
            log.error("batch of model %s failed: %r", self.name, exc)
            status, message, headers = 500, f"Internal inference error - {type(exc).__name__}: {exc}", ()
        if len(members) > 1:
            message += f" (in a batch of {len(members)} requests, {group.rows} rows)"
        for member in members:
            if not member.future.done():
                member.future.set_exception(BatchFailed(message, status, headers))

    @property
    def queued(self) -> int:
        """Requests waiting in groups (not yet sent)."""
        return sum(len(g.members) for g in self.groups.values())
