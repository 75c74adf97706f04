"""Answers on a connection's streams: a unary reply, messages, trailers, errors, resets.

Rules: the half of a GrpcConnection (grpc/h2/protocol.py) that writes; it only queues frames
in h2 (the connection flushes them once per read, or once per loop iteration for replies that
complete later). A call is finished exactly once (`_finish`): its quota returned, its timer
and task cancelled, and, if the client is still sending, its stream reset so it stops.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from fastserve.grpc import access
from fastserve.grpc.h2.call import Call
from fastserve.grpc.h2.framing import percent_encode, too_large
from fastserve.grpc.h2.outbound import pump, send_message, status_trailers

if TYPE_CHECKING:
    from fastserve.grpc.h2.server import Shared


class Responder:
    shared: Shared
    loop: asyncio.AbstractEventLoop
    conn: H2Connection | None
    calls: dict[int, Call]
    blocked: set[Call]
    paused: bool
    address: str

    def _release(self, call: Call) -> None:
        if call.reserved:
            self.shared.quota.used -= call.reserved
            call.reserved = 0

    def _reply(self, call: Call, response: Any) -> None:
        """A unary call's one response, then OK."""
        if call.finished:
            return
        data = call.method.serialize(response) if call.method.serialize is not None else response
        limit = self.shared.limits.max_send
        if len(data) > limit:
            error = too_large(len(data), limit, sent=True)
            return self.fail(call, error.code, error.details)
        self.send(call, data)
        self.end(call, [(b"grpc-status", b"0")])

    def send(self, call: Call, data: Any) -> None:
        conn = self.conn
        assert conn is not None
        send_message(conn, call, data)
        if call.outbox:
            self._pump(call)

    def end(self, call: Call, trailers: list[tuple[bytes, bytes]]) -> None:
        """The status, after whatever DATA is still waiting for the window."""
        call.trailers = trailers
        self._pump(call)

    def fail(self, call: Call, code: grpc.StatusCode, details: str) -> None:
        """End a call with an error: pending DATA is dropped; a client still sending is told to stop."""
        if call.finished:
            return
        if call.outbox and call.headers_sent:  # part of a message is out: trailers now would corrupt it
            call.outbox.clear()
            self._finish(call, reset=False)
            self._reset(call.stream_id, ErrorCodes.CANCEL)
            return
        self.end(call, status_trailers(code, details))

    def _pump(self, call: Call) -> None:
        conn = self.conn
        if conn is None or call.finished:
            return
        if self.paused and call.outbox:
            self.blocked.add(call)
            return
        try:
            complete = pump(conn, call)
        except H2Error:  # the stream is closed under us (a reset in flight)
            complete = True
        if complete:
            self._finish(call, reset=not call.remote_done)
        elif call.outbox:
            self.blocked.add(call)

    def _window(self, stream_id: int) -> None:
        if stream_id == 0:
            self._pump_blocked()
        else:
            call = self.calls.get(stream_id)
            if call is not None and call in self.blocked:
                self.blocked.discard(call)
                self._pump(call)

    def _pump_blocked(self) -> None:
        blocked, self.blocked = self.blocked, set()
        for call in blocked:
            self._pump(call)

    def _http_error(self, sid: int, status: bytes, message: str, still_sending: bool, method: str, path: str) -> None:
        conn = self.conn
        assert conn is not None
        if self.shared.access_log:
            access.write(self.address, method, path, 13)
        conn.send_headers(sid, [(b":status", status), (b"content-type", b"text/plain"), (b"grpc-status", b"13"),
                                (b"grpc-message", percent_encode(message))], end_stream=True)
        if still_sending:
            self._reset(sid, ErrorCodes.NO_ERROR)

    def _finish(self, call: Call, reset: bool) -> None:
        """The call is answered: forget it; a client still sending its request is stopped."""
        call.finished = True
        if self.shared.access_log:
            access.write(call.context.address, "POST", call.path, call.trailers[0][1].decode() if call.trailers else 1)
        self.calls.pop(call.stream_id, None)
        self.blocked.discard(call)
        self._release(call)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        task = call.task
        if task is not None and not task.done():
            task.cancel()  # an answer before the handler's own (deadline, shutdown): stop its work
        if reset:
            self._reset(call.stream_id, ErrorCodes.NO_ERROR)

    def _reset(self, sid: int, code: ErrorCodes) -> None:
        """RST_STREAM, unless h2 already saw the stream end (its END_STREAM came in the same read)."""
        if self.conn is not None:
            try:
                self.conn.reset_stream(sid, code)
            except H2Error:
                pass

    def _drop(self, call: Call) -> None:
        """The client cancelled (RST_STREAM) or left: no answer, free everything now."""
        call.outbox.clear()
        call.trailers = None
        call.remote_done = True
        if call.drained is not None and not call.drained.done():
            call.drained.cancel()
        self._finish(call, reset=False)
