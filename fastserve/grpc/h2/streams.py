"""Streaming calls on the h2 transport: a server stream (health Watch) or a bidirectional one
(server reflection), each run as a task that sends every message the handler yields.

The request iterator a bidirectional handler reads is fed by the connection as messages
arrive; a handler that yields faster than the peer reads waits for its outbox to drain, so
a stream never buffers more than one message beyond the peer's window.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from fastserve.grpc.h2.call import END, Call
from fastserve.grpc.h2.hpackout import OK
from fastserve.grpc.rpc import Aborted

if TYPE_CHECKING:
    from fastserve.grpc.h2.protocol import GrpcConnection

log = logging.getLogger("fastserve.grpc")


async def _requests(call: Call, queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    parse = call.method.parse
    while True:
        message = await queue.get()
        if message is END:
            return
        yield parse(message) if parse is not None else message


async def serve_stream(connection: GrpcConnection, call: Call, request: Any) -> None:
    method = call.method
    if isinstance(request, asyncio.Queue):
        request = _requests(call, request)
    try:
        result = method.handler(request, call.context)
        if inspect.isasyncgen(result):
            serialize = method.serialize
            async for response in result:
                if call.finished:
                    return
                connection.send(call, serialize(response) if serialize is not None else response)
                connection.schedule_flush()
                if call.outbox:  # the peer reads slowly: wait for the window before the next message
                    call.drained = connection.loop.create_future()
                    await call.drained
                    call.drained = None
        else:
            await result
    except Aborted as exc:
        connection.fail(call, exc.code, exc.details)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gRPC stream failed")
        connection.fail(call, grpc.StatusCode.INTERNAL, "Internal server error")
    else:
        connection.end(call, OK, b"0")
    connection.schedule_flush()
