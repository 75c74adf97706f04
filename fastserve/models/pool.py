"""A pool of execution slots (one OpenVINO infer request each) with FIFO waiters.

Rules: plain asyncio, no OpenVINO calls. A slot is always given back through release(), and
a released slot goes straight to the longest waiter, so no request starves.

Overload: the queue of waiters is bounded (`QueueLimits.max_waiting`) and a waiter may wait at
most `QueueLimits.timeout` seconds; past either limit the request gets 503 with Retry-After
instead of joining an unbounded queue. The limits are server-wide: the server sets `LIMITS`
once at start-up from its settings, and every pool built afterwards (reloads too) reads it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from fastserve.errors import Overloaded

SlotT = TypeVar("SlotT")

# What a client should wait before retrying an overloaded model (Retry-After, seconds).
RETRY_AFTER_SECONDS = 1


@dataclass(slots=True)
class QueueLimits:
    # Requests waiting for a free infer request, per model version. 4096 waiting requests of a
    # 5 ms model are 20 s of work already: anything beyond is better refused than queued.
    max_waiting: int = 4096
    # Seconds a request may wait for an infer request; 0 waits as long as it takes.
    timeout: float = 0.0


LIMITS = QueueLimits()


def configure(max_waiting: int, timeout: float) -> None:
    """Set the server-wide queue limits (called once by the server before models load)."""
    LIMITS.max_waiting = max_waiting
    LIMITS.timeout = timeout


class SlotPool(Generic[SlotT]):
    __slots__ = ("idle", "waiters", "limits", "size", "name")

    def __init__(self, slots: list[SlotT], name: str, limits: QueueLimits | None = None) -> None:
        self.idle = list(slots)
        self.size = len(slots)
        self.waiters: deque[asyncio.Future[SlotT]] = deque()
        self.limits = LIMITS if limits is None else limits
        self.name = name

    def try_acquire(self) -> SlotT | None:
        return self.idle.pop() if self.idle else None

    async def acquire(self) -> SlotT:
        if self.idle:
            return self.idle.pop()
        limits = self.limits
        if len(self.waiters) >= limits.max_waiting:
            raise Overloaded(f"Too many requests waiting for model {self.name}", RETRY_AFTER_SECONDS)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[SlotT] = loop.create_future()
        self.waiters.append(waiter)
        # A timer only for requests that really wait: the idle fast path above pays nothing.
        timer = loop.call_later(limits.timeout, self._expire, waiter) if limits.timeout > 0 else None
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # handed over just as we were cancelled
            else:
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass  # release() already skipped past it
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: asyncio.Future[SlotT]) -> None:
        if not waiter.done():
            waiter.set_exception(Overloaded(
                f"Timed out after {self.limits.timeout:g} s waiting for an infer request of model {self.name}",
                RETRY_AFTER_SECONDS,
            ))

    def release(self, slot: SlotT) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self.idle.append(slot)

    @property
    def busy(self) -> int:
        return self.size - len(self.idle)

    @property
    def waiting(self) -> int:
        return len(self.waiters)
