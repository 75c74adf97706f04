"""SlotPool overload limits: a bounded queue and a wait timeout, both 503 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from fastserve.errors import Unavailable
from fastserve.models.pool import QueueLimits, SlotPool


def retry_after(exc: Unavailable) -> bytes:
    return dict(exc.headers)[b"retry-after"]


def test_full_queue_is_503_with_retry_after() -> None:
    async def main() -> None:
        pool: SlotPool[str] = SlotPool(["s"], "m", QueueLimits(max_waiting=2, timeout=0))
        slot = await pool.acquire()
        waiting = [asyncio.ensure_future(pool.acquire()) for _ in range(2)]
        await asyncio.sleep(0)
        assert pool.waiting == 2
        with pytest.raises(Unavailable) as info:
            await pool.acquire()
        assert info.value.status == 503 and retry_after(info.value) == b"1"
        assert "Too many requests waiting for model m" in info.value.message
        # Recovers: the waiters are served in order as the slot comes back.
        pool.release(slot)
        first = await waiting[0]
        pool.release(first)
        second = await waiting[1]
        pool.release(second)
        assert pool.idle == ["s"] and pool.waiting == 0

    asyncio.run(main())


def test_wait_timeout_is_503_and_the_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        pool: SlotPool[str] = SlotPool(["s"], "m", QueueLimits(max_waiting=10, timeout=0.05))
        slot = await pool.acquire()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable) as info:
            await pool.acquire()
        assert 0.04 <= loop.time() - started < 5.0
        assert "Timed out after 0.05 s" in info.value.message and retry_after(info.value) == b"1"
        assert pool.waiting == 0
        pool.release(slot)
        assert pool.idle == ["s"]  # not handed to the expired waiter
        # A waiter served in time is not expired later (its timer is cancelled).
        held = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)  # the waiter queues and arms its timer
        assert pool.waiting == 1
        pool.release(held)  # well within 0.05 s: nothing ran in between
        assert await waiter == "s"
        await asyncio.sleep(0.1)  # past the timeout: a live timer would have fired by now
        pool.release("s")
        assert pool.idle == ["s"] and pool.waiting == 0

    asyncio.run(main())


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        pool: SlotPool[str] = SlotPool(["s"], "m", QueueLimits(max_waiting=1, timeout=5))
        slot = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.waiting == 0
        pool.release(slot)
        assert pool.idle == ["s"]

    asyncio.run(main())
