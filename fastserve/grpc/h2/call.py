"""One gRPC call (an HTTP/2 stream): what arrived, what runs, what waits to be sent."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from fastserve.grpc.h2.context import CallContext
from fastserve.grpc.h2.framing import MessageReader
from fastserve.grpc.rpc import Method

END = object()  # the end of a stream of requests


class Call:
    __slots__ = ("stream_id", "method", "context", "reader", "gzip", "reserved", "message", "requests",
                 "task", "timer", "remote_done", "headers_sent", "outbox", "trailers", "finished", "drained",
                 "path", "code")

    def __init__(self, stream_id: int, method: Method, context: CallContext, gzip: bool, path: str = "") -> None:
        self.stream_id = stream_id
        self.path = path  # for the access log
        self.method = method
        self.context = context
        self.reader: MessageReader | None = None  # set by the connection, whose quota it charges
        self.gzip = gzip  # grpc-encoding: gzip (a message with the compressed flag is inflated)
        self.reserved = 0  # bytes of the memory quota this call holds while its message arrives
        self.message: Any = None  # a unary call's request message (bytes or a view)
        self.requests: asyncio.Queue[Any] | None = None  # a client stream's messages, then END
        self.task: asyncio.Task[Any] | None = None  # only when the handler has to wait
        self.timer: asyncio.TimerHandle | None = None  # the deadline, armed only while it can pass
        self.remote_done = False  # the client sent END_STREAM
        self.headers_sent = False
        self.outbox: deque[Any] = deque()  # DATA waiting for the peer's flow-control window
        self.trailers: bytes | None = None  # the HPACK block, sent once the outbox is empty
        self.code = b"1"  # its grpc-status, for the access log (1, CANCELLED, until it has one)
        self.finished = False
        self.drained: asyncio.Future[None] | None = None  # a stream handler waiting for the outbox
