"""The event loop's queue: a bound on inline inferences waiting for the loop, per worker process.

Rules: plain asyncio, no HTTP or protobuf; both transports call it through the core
(InferenceCore.admit) before decoding a request, so a refusal costs no decode.

A model that runs inline (models/servable.py) has no queue of its own: its requests wait in
the event loop, each behind every inline inference read in the same turn of the loop (uvloop
hands a turn all the sockets that became readable together, one request each from a
closed-loop client). So the turn's count of inline requests is the queue length, and each
request's wait is the sum of the inferences before it. Past `limit` requests already answered
in this turn, a request gets 503 (gRPC RESOURCE_EXHAUSTED) with Retry-After at once, with
the text the per-version queue (models/pool.py) uses when full; the count restarts with the
next turn (a callback scheduled once per turn, not per request). Async models keep their
per-version queue and its bound; their requests leave the loop at once.

The limit is --max_queue_size (default 4096): a closed-loop client has one request in flight
per connection, so loads under ~4096 connections per worker never meet it.
"""

from __future__ import annotations

import asyncio

from fastserve.errors import Overloaded

# What a client should wait before retrying (Retry-After, seconds): as models/pool.py.
RETRY_AFTER_SECONDS = 1


class LoopQueue:
    __slots__ = ("count", "limit", "refused")

    def __init__(self, limit: int = 4096) -> None:
        self.count = 0  # inline requests admitted in this turn of the loop
        self.limit = limit  # admitted per turn at most (at least 1: one request never waits)
        self.refused = 0  # requests refused since start (for the log and tests)

    def enter(self, name: str) -> None:
        """Admit one inline request, or raise Overloaded when `limit` were admitted this turn."""
        count = self.count
        if count >= self.limit:
            self.refused += 1
            raise Overloaded(f"Too many requests waiting for model {name}", RETRY_AFTER_SECONDS)
        if count == 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # a protocol driven by hand, outside any loop (unit tests): no turns to count
            loop.call_soon(self._next_turn)  # runs after this turn's I/O callbacks
        self.count = count + 1

    def _next_turn(self) -> None:
        self.count = 0


LOOP_QUEUE = LoopQueue()


def configure(max_queue_size: int) -> None:
    """Set the worker's bound (called once by the server before it serves)."""
    LOOP_QUEUE.limit = max(max_queue_size, 1)
    LOOP_QUEUE.count = 0
