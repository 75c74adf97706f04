"""The `context` a handler gets on the h2 transport: the part of grpcio's ServicerContext that
fastserve's services use (abort, time_remaining, metadata, peer)."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import grpc

from fastserve.grpc.rpc import Aborted

_RESERVED = frozenset((b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding",
                       b"user-agent"))


class CallContext:
    __slots__ = ("loop", "deadline", "headers", "address")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float | None, headers: list[tuple[bytes, bytes]],
                 address: str) -> None:
        self.loop = loop
        self.deadline = deadline  # loop time, from grpc-timeout
        self.headers = headers
        self.address = address

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)  # the dispatcher turns it into trailers

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.loop.time()

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return tuple((k.decode("latin-1"), v if k.endswith(b"-bin") else v.decode("latin-1"))
                     for k, v in self.headers if not k.startswith(b":") and k not in _RESERVED)

    def peer(self) -> str:
        return self.address
