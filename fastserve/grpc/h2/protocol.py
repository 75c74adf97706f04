"""One client connection: the HTTP/2 engine (grpc/h2/engine.py) fed from the socket, each stream a gRPC call.

Rules: the loop's callbacks are the only driver. A unary call runs when its request has
arrived, inline (grpc/h2/inline.py): a ModelInfer that needs no wait answers within the same
data_received, without a task, and everything it produced leaves in one transport.write. A
call that waits becomes a task; its deadline (grpc-timeout) is a timer only then, or while
its request is still arriving. RST_STREAM cancels a call's task and returns its quota; a
malformed connection gets GOAWAY with the engine's error code and is closed; nothing else is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc

from fastserve.grpc.h2 import inline
from fastserve.grpc.h2.call import END, Call
from fastserve.grpc.h2.codes import INTERNAL_ERROR, NO_ERROR, REFUSED_STREAM, ProtocolError
from fastserve.grpc.h2.context import CallContext
from fastserve.grpc.h2.engine import Engine
from fastserve.grpc.h2.framing import MessageReader, gunzip, parse_timeout, too_large
from fastserve.grpc.h2.options import CONNECTION_WINDOW, UNLIMITED_STREAMS
from fastserve.grpc.h2.readmark import ReadMark
from fastserve.grpc.h2.responder import Responder
from fastserve.grpc.h2.streams import serve_stream
from fastserve.grpc.rpc import BIDI, UNARY, Aborted

if TYPE_CHECKING:
    from fastserve.grpc.h2.server import Shared

log = logging.getLogger("fastserve.grpc")
INTERNAL = grpc.StatusCode.INTERNAL
BIG_WRITE = 8  # pieces to write: more (a big reply's frames) go out by writelines, not joined


class GrpcConnection(Responder, asyncio.Protocol):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.loop = shared.loop
        self.calls: dict[int, Call] = {}
        self.transport: Any = None
        self.conn: Engine = None  # type: ignore[assignment]  # made with the connection
        self.address = ""
        self.goaway: int | None = None  # last stream id we accept once shutting down
        self.paused = False  # the transport's buffer is full: DATA waits
        self.blocked: set[Call] = set()  # calls whose DATA waits for a window
        self.flush_soon = False
        self.arriving: list[Call] = []  # calls to give a deadline timer after this batch of events
        self.ping_sent: float | None = None  # keepalive: when our unanswered PING left

    # The socket

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = f"ipv6:[{peer[0]}]:{peer[1]}" if peer and ":" in peer[0] else (
            f"ipv4:{peer[0]}:{peer[1]}" if peer else "")
        limits = self.shared.limits
        # The stream limit is in SETTINGS, in force once the client acknowledges it (calls it
        # opens before it has read them are served); frames up to our size are accepted at once.
        streams = None if limits.max_concurrent_streams == UNLIMITED_STREAMS else limits.max_concurrent_streams
        self.conn = Engine(self, limits.max_frame, limits.stream_window, CONNECTION_WINDOW, streams)
        self.write(self.conn.take())
        self.mark = ReadMark(transport)
        self.shared.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.connections.discard(self)
        for call in list(self.calls.values()):
            self._drop(call)
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump_blocked()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive(data)
        except ProtocolError as exc:  # garbage or a broken HTTP/2 peer: this connection only
            log.debug("closing a gRPC connection from %s: %s", self.address, exc)
            self._close_with(exc.code)
            return
        except Exception:  # a bug of ours: this connection ends, the server goes on
            log.exception("closing a gRPC connection from %s", self.address)
            self._close_with(INTERNAL_ERROR)
            return
        self.mark.follow(self.conn.data_left + self.conn.pad_left)
        if self.arriving:
            self._arm_arriving()
        self.flush()

    def _close_with(self, code: int) -> None:
        for call in list(self.calls.values()):
            self._drop(call)
        conn = self.conn
        conn.take()  # whatever was queued: the GOAWAY says where the connection stopped
        conn.goaway(conn.highest, code)
        self.write(conn.take())
        self._close()

    # The engine's events (grpc/h2/engine.py)

    def on_data(self, sid: int, piece: Any) -> None:
        call = self.calls.get(sid)
        if call is not None and not call.finished and call.reader is not None:
            self._data(call, piece)

    def on_end(self, sid: int) -> None:
        call = self.calls.get(sid)
        if call is not None:
            self._ended(call)

    def on_reset(self, sid: int) -> None:
        call = self.calls.get(sid)
        if call is not None:
            self._drop(call)

    def on_window(self, sid: int) -> None:
        self._window(sid)

    def on_ping_ack(self) -> None:
        self.ping_sent = None

    def on_goaway(self) -> None:
        """The client's GOAWAY: it opens no more streams; ours end, and so does the connection."""
        for call in list(self.calls.values()):
            self._drop(call)
        self.flush()
        self._close()

    def flush(self) -> None:
        self.flush_soon = False
        if self.transport is None:
            return
        out = self.conn.take()
        if out:
            self.write(out)
        if self.goaway is not None and not self.calls:
            self._close()

    def write(self, out: list[Any]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(out) == 1:
            transport.write(out[0])
        elif len(out) <= BIG_WRITE:
            transport.write(b"".join(out))
        else:
            transport.writelines(out)  # the frames of a big reply: views of it, not joined here

    def schedule_flush(self) -> None:
        # Replies that complete in callbacks of one loop iteration leave in one write.
        if not self.flush_soon:
            self.flush_soon = True
            self.loop.call_soon(self.flush)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # Streams

    def on_headers(self, sid: int, fields: list[tuple[bytes, bytes]], headers: dict[bytes, bytes],
                   end_stream: bool) -> None:
        """A new stream: a call (its request's headers decoded, `headers` as a dict of them)."""
        if self.goaway is not None and sid > self.goaway:
            self.conn.reset(sid, REFUSED_STREAM)  # after our GOAWAY: the client retries elsewhere
            return
        path = headers.get(b":path", b"").decode("latin-1")
        verb = headers.get(b":method", b"")
        if verb != b"POST":
            self._http_error(sid, b"405", "gRPC requires POST", not end_stream, verb.decode("latin-1"), path)
            return
        if not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            self._http_error(sid, b"415", f"invalid gRPC request content-type "
                             f"{headers.get(b'content-type', b'').decode('latin-1')!r}", not end_stream,
                             "POST", path)
            return
        method = self.shared.table.lookup(path)
        deadline = None
        timeout = headers.get(b"grpc-timeout")
        context = CallContext(self.loop, None, fields, self.address)
        call = Call(sid, method, context, headers.get(b"grpc-encoding") == b"gzip", path)  # type: ignore[arg-type]
        self.calls[sid] = call
        call.reader = MessageReader(lambda length: self._admit(call, length))
        if timeout is not None:
            try:
                deadline = self.loop.time() + parse_timeout(timeout)
            except ValueError as exc:
                return self.fail(call, INTERNAL, str(exc))
            context.deadline = deadline
            self.arriving.append(call)
        encoding = headers.get(b"grpc-encoding", b"identity")
        if encoding not in (b"identity", b"gzip"):
            return self.fail(call, grpc.StatusCode.UNIMPLEMENTED, f"grpc-encoding {encoding.decode('latin-1')!r} "
                                "is not supported (grpc-accept-encoding: identity,gzip)")
        if method is None:
            return self.fail(call, grpc.StatusCode.UNIMPLEMENTED, "Method not found!")  # grpcio's words
        if method.kind == BIDI:  # its handler reads the requests as they come
            call.requests = asyncio.Queue()
            self._start_stream(call, call.requests)
        if end_stream:
            self._ended(call)

    def _admit(self, call: Call, length: int) -> None:
        """Checked at each length prefix, before a byte of the message is kept."""
        limit = self.shared.limits.max_receive
        if length > limit:
            raise too_large(length, limit)
        quota = self.shared.quota
        refusal = quota.refusal(length)
        if refusal is not None:
            raise Aborted(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        quota.used += length
        call.reserved += length

    def _data(self, call: Call, piece: Any) -> None:
        try:
            messages = call.reader.feed(piece)  # type: ignore[union-attr]
            for flag, message in messages:
                if flag:
                    if not call.gzip:
                        raise Aborted(INTERNAL, "a compressed message without grpc-encoding")
                    message = gunzip(message, self.shared.limits.max_receive)
                if call.requests is not None:
                    call.requests.put_nowait(message)
                elif call.message is None:
                    call.message = message
                else:
                    raise Aborted(INTERNAL, "more than one request message for a unary method")
        except Aborted as exc:
            self.fail(call, exc.code, exc.details)

    def _ended(self, call: Call) -> None:
        call.remote_done = True
        if call.finished:
            return
        if call.requests is not None:
            if call.reader is not None and call.reader.partial:
                return self.fail(call, INTERNAL, "the request stream ended inside a message")
            call.requests.put_nowait(END)
            return
        if call.message is None:
            return self.fail(call, INTERNAL, "the request stream ended before a whole message arrived")
        self._release(call)  # from here the handler holds it (ModelInfer charges the quota itself)
        body, call.message = call.message, None
        method = call.method
        try:
            request = method.parse(body) if method.parse is not None else body
            if method.kind != UNARY:
                return self._start_stream(call, request)
            coro = method.handler(request, call.context)
            done, value = inline.step(coro)
        except Aborted as exc:
            return self.fail(call, exc.code, exc.details)
        except Exception:
            log.exception("gRPC %s failed", getattr(method.handler, "__qualname__", method.handler))
            return self.fail(call, INTERNAL, "Internal server error")
        if done:
            return self._reply(call, value)
        call.task = task = self.loop.create_task(inline.resume(coro, value))
        task.add_done_callback(lambda finished: self._unary_done(call, finished))
        if call.context.deadline is not None and call.timer is None:
            call.timer = self.loop.call_at(call.context.deadline, self._expire, call)

    def _unary_done(self, call: Call, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or call.finished:
            return  # answered already (deadline, shutdown) or the client is gone
        error = task.exception()
        try:
            if error is None:
                self._reply(call, task.result())
            elif isinstance(error, Aborted):
                self.fail(call, error.code, error.details)
            else:
                log.error("gRPC call failed", exc_info=error)
                self.fail(call, INTERNAL, "Internal server error")
        except Exception:  # a bug of ours while answering: the client still gets a status
            log.exception("gRPC answer failed")
            call.outbox.clear()
            if not call.finished:
                self._finish(call, reset=False)
            self.conn.reset(call.stream_id, INTERNAL_ERROR)
        self.schedule_flush()

    def _start_stream(self, call: Call, request: Any) -> None:
        call.task = self.loop.create_task(serve_stream(self, call, request))
        if call.context.deadline is not None and call.timer is None:
            call.timer = self.loop.call_at(call.context.deadline, self._expire, call)

    def _arm_arriving(self) -> None:
        for call in self.arriving:
            if not call.finished and call.timer is None and call.task is None and call.context.deadline is not None:
                call.timer = self.loop.call_at(call.context.deadline, self._expire, call)
        self.arriving.clear()

    def _expire(self, call: Call) -> None:
        call.timer = None
        if not call.finished:
            self.fail(call, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self.flush()

    # Shutdown and keepalive (driven by grpc/h2/server.py)

    def send_goaway(self) -> None:
        """GOAWAY (NO_ERROR, the last stream we serve), yet keep serving the streams already opened."""
        if self.goaway is not None or self.transport is None:
            return
        self.goaway = self.conn.highest
        self.conn.goaway(self.goaway, NO_ERROR)
        self.flush()

    def abort(self) -> None:
        """The grace is over: cancel what still runs and close."""
        for call in list(self.calls.values()):
            self.fail(call, grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        self.flush()
        self._close()

    def keepalive(self, now: float) -> None:
        """Ping an idle peer; close one that did not answer the last ping in time."""
        if self.transport is None:
            return
        if self.ping_sent is not None:
            if now - self.ping_sent > self.shared.limits.keepalive_timeout:
                log.info("closing the gRPC connection from %s: no answer to a keepalive ping", self.address)
                self.abort()
            return
        self.ping_sent = now
        self.conn.ping(b"fastserv")
        self.flush()
