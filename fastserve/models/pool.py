"""A pool of execution slots (one OpenVINO infer request each) with FIFO waiters.

Rules: plain asyncio, no OpenVINO calls. A slot is always given back through release(), and
a released slot goes straight to the longest waiter, so no request starves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from fastserve.errors import Unavailable

SlotT = TypeVar("SlotT")


class SlotPool(Generic[SlotT]):
    __slots__ = ("idle", "waiters", "max_waiting", "size", "name")

    def __init__(self, slots: list[SlotT], max_waiting: int, name: str) -> None:
        self.idle = list(slots)
        self.size = len(slots)
        self.waiters: deque[asyncio.Future[SlotT]] = deque()
        self.max_waiting = max_waiting
        self.name = name

    def try_acquire(self) -> SlotT | None:
        return self.idle.pop() if self.idle else None

    async def acquire(self) -> SlotT:
        if self.idle:
            return self.idle.pop()
        if len(self.waiters) >= self.max_waiting:
            raise Unavailable(f"Too many requests waiting for model {self.name}")
        waiter: asyncio.Future[SlotT] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            else:
                self.waiters.remove(waiter)
            raise

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
