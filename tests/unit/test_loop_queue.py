"""The loop's queue (fastserve/core/admission.py): a bound per turn of the event loop, reset by the next turn."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from fastserve.core.admission import LoopQueue
from fastserve.errors import Overloaded
from fastserve.grpc.status import grpc_status


def test_past_the_limit_in_one_turn_is_overloaded_and_the_next_turn_starts_again() -> None:
    async def main() -> None:
        queue = LoopQueue(3)
        for _ in range(3):
            queue.enter("add")
        with pytest.raises(Overloaded) as info:
            queue.enter("add")
        exc = info.value
        assert exc.status == 503 and dict(exc.headers)[b"retry-after"] == b"1"
        assert exc.message == "Too many requests waiting for model add"
        assert grpc_status(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)  # the same core on gRPC
        assert queue.refused == 1
        await asyncio.sleep(0)  # the next turn of the loop
        assert queue.count == 0
        for _ in range(3):
            queue.enter("add")
        assert queue.count == 3

    asyncio.run(main())


def test_one_reset_per_turn_however_many_requests() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        queue = LoopQueue(100)
        before = len(loop._ready)  # type: ignore[attr-defined]
        for _ in range(50):
            queue.enter("add")
        assert len(loop._ready) == before + 1  # type: ignore[attr-defined]

    asyncio.run(main())
