"""Answers on a connection's streams: a unary reply, messages, trailers, errors, resets.

Rules: the half of a GrpcConnection (grpc/h2/protocol.py) that writes; it only queues frames
in the engine (the connection flushes them once per read, or once per loop iteration for
replies that complete later). A call is finished exactly once (`_finish`): its quota
returned, its timer and task cancelled, and, if the client is still sending, its stream reset
so it stops.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc

from fastserve.grpc import access
from fastserve.grpc.h2.call import Call
from fastserve.grpc.h2.codes import CANCEL, NO_ERROR
from fastserve.grpc.h2.engine import Engine
from fastserve.grpc.h2.framing import too_large
from fastserve.grpc.h2.hpackout import CODES, OK
from fastserve.grpc.h2.outbound import http_error, pump, send_message, status_trailers, unary_frames

if TYPE_CHECKING:
    from fastserve.grpc.h2.server import Shared


class Responder:
    shared: Shared
    loop: asyncio.AbstractEventLoop
    conn: Engine
    calls: dict[int, Call]
    blocked: set[Call]
    paused: bool
    address: str

    def _release(self, call: Call) -> None:
        if call.reserved:
            self.shared.quota.used -= call.reserved
            call.reserved = 0

    def _reply(self, call: Call, response: Any) -> None:
        """A unary call's one response, then OK: in one piece when the window allows."""
        if call.finished:
            return
        data = call.method.serialize(response) if call.method.serialize is not None else response
        size = len(data)
        if size > self.shared.limits.max_send:
            error = too_large(size, self.shared.limits.max_send, sent=True)
            return self.fail(call, error.code, error.details)
        conn, sid = self.conn, call.stream_id
        if (not call.headers_sent and not conn.table_reset and size + 5 <= conn.peer_max_frame
                and size + 5 <= conn.window(sid)):
            call.code, call.trailers = b"0", OK
            conn.send_raw(sid, unary_frames(sid, data), size + 5, True)
            self._finish(call, reset=not call.remote_done)
            return
        self.send(call, data)
        self.end(call, OK, b"0")

    def send(self, call: Call, data: Any) -> None:
        send_message(self.conn, call, data)
        if call.outbox:
            self._pump(call)

    def end(self, call: Call, trailers: bytes, code: bytes) -> None:
        """The status, after whatever DATA is still waiting for the window."""
        call.trailers, call.code = trailers, code
        self._pump(call)

    def fail(self, call: Call, code: grpc.StatusCode, details: str) -> None:
        """End a call with an error: pending DATA is dropped; a client still sending is told to stop."""
        if call.finished:
            return
        if call.outbox and call.headers_sent:  # part of a message is out: trailers now would corrupt it
            call.outbox.clear()
            call.code = CODES[code]
            self._finish(call, reset=False)
            self.conn.reset(call.stream_id, CANCEL)
            return
        self.end(call, status_trailers(code, details), CODES[code])

    def _pump(self, call: Call) -> None:
        if call.finished:
            return
        if self.paused and call.outbox:
            self.blocked.add(call)
            return
        if pump(self.conn, call):
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
        if self.shared.access_log:
            access.write(self.address, method, path, 13)
        self.conn.send_headers(sid, http_error(status, message), end_stream=True)
        if still_sending:
            self.conn.reset(sid, NO_ERROR)

    def _finish(self, call: Call, reset: bool) -> None:
        """The call is answered: forget it; a client still sending its request is stopped."""
        call.finished = True
        if self.shared.access_log:
            access.write(self.address, "POST", call.path, call.code.decode())
        self.calls.pop(call.stream_id, None)
        if self.blocked:
            self.blocked.discard(call)
        if call.reserved:
            self._release(call)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        task = call.task
        if task is not None and not task.done():
            task.cancel()  # an answer before the handler's own (deadline, shutdown): stop its work
        if reset:
            self.conn.reset(call.stream_id, NO_ERROR)

    def _drop(self, call: Call) -> None:
        """The client cancelled (RST_STREAM) or left: no answer, free everything now."""
        call.outbox.clear()
        call.trailers = None
        call.remote_done = True
        if call.drained is not None and not call.drained.done():
            call.drained.cancel()
        self._finish(call, reset=False)
