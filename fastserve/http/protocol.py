"""HttpProtocol: one asyncio.Protocol per connection, parsing with httptools.

Rules: owns the connection's bytes and state only. It hands each complete request to
`app.handle(request)` (a Response, or an awaitable of one) and writes responses in request
order. Knows nothing of KServe, numpy or OpenVINO. Parser callbacks never let an exception
escape except StopParsing, which only stops the parser; every answer goes out through _send
(a handled request) or _send_final (a request that could not be parsed: answer, then close).

Flow control (the plumbing is in flow.py): while a response has not reached the socket whole
we read nothing more and start no pipelined request, so a slow reader costs at most one
buffered response. Reading also pauses when MAX_PIPELINE requests or MAX_PIPELINE_BYTES of
bodies wait their turn.

Closing: once `read_done` is set (parse error, timeout, `Connection: close`, EOF) no more
input is parsed; what is queued is answered, then the connection closes (a lingering close).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools

from fastserve.errors import FastServeError, error_body
from fastserve.http import limits
from fastserve.http.flow import FlowControl
from fastserve.http.limits import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL_BYTES, StopParsing
from fastserve.http.request import Request
from fastserve.http.response import CONTINUE, Response, error_response, plain_error
from fastserve.http.state import ServerState
from fastserve.http.timeouts import check_timeouts

log = logging.getLogger("fastserve.http")

class HttpProtocol(FlowControl):
    __slots__ = (
        "app", "state", "parser", "pipeline", "queued_bytes", "active", "last_activity",
        "url", "headers", "header_bytes", "stalled_bytes", "progress", "seq", "body", "parsing", "headers_done",
        "started_at", "continue_pending", "error", "max_body", "keep_alive", "http10", "extra_headers", "quick",
    )  # fmt: skip

    def __init__(self, app: Any, state: ServerState) -> None:
        super().__init__(state.loop)
        self.app = app
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        # Per-connection state (the transport's is in FlowControl)
        self.pipeline: deque[Request | Response] = deque()  # a Response here is a final parse error
        self.queued_bytes = 0  # body bytes of the Requests in `pipeline`
        self.active: Request | None = None  # being handled; its response is the next to write
        self.last_activity = 0.0
        self.max_body = state.settings.max_request_size
        self.extra_headers: Callable[[Request | None], bytes] | None = getattr(app, "extra_headers", None)
        self.quick: dict[bytes, Callable[[], Response]] = {} if state.access_log else getattr(app, "quick", {})
        # Per-request state (the request being parsed)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0  # URL + header names and values seen by the callbacks
        # Raw bytes of whole chunks that added nothing to the body: a head, or chunked trailers, that
        # httptools buffers internally until the line ends. Bounded by MAX_HEADER_BYTES too.
        self.stalled_bytes = 0
        self.progress = False  # on_body ran during this feed
        self.seq = 0  # messages begun on this connection
        self.body: bytearray | None = None
        self.parsing = False
        self.headers_done = False
        self.started_at = 0.0
        self.continue_pending = False
        self.error: Response | None = None
        self.keep_alive = True  # as the request's headers ask (set once they are complete)
        self.http10 = False

    # Connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.last_activity = self.write_progress_at = self.loop.time()
        if len(self.state.connections) >= self.state.settings.max_connections or self.state.shutting_down:
            message = "Shutting down" if self.state.shutting_down else "Too many connections"
            refusal = Response(503, error_body(message), headers=limits.RETRY_AFTER)
            transport.writelines(refusal.wire(False, False, False))
            transport.close()
            self.read_done = True
            return
        self.transport = transport
        self.state.connections.add(self)
        transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._drop_pipeline()
        self.body = None  # a half-received body is garbage now; the running handler keeps its own request
        self._lost()

    def data_received(self, data: bytes) -> None:
        if self.read_done:
            return  # after an error, `Connection: close` or while lingering, input is discarded
        self.last_activity = self.loop.time()
        parsing = self.parsing
        seq = self.seq
        self.progress = False
        view: bytes | memoryview = data
        while True:
            try:
                self.parser.feed_data(view)
            except httptools.HttpParserCallbackError as exc:
                if self.error is not None:
                    self._fail(self.error)
                elif not isinstance(exc.__context__, StopParsing):
                    log.error("HTTP parser callback failed", exc_info=exc.__context__)
                    self._fail(plain_error(400, "Malformed HTTP request"))
                return
            except httptools.HttpParserUpgrade as exc:
                # A bodyless request asking to switch protocols: we answered it as HTTP/1.1, which
                # RFC 9110 7.8 allows, and parse on from where llhttp stopped.
                view = memoryview(data)[len(data) - len(view) + exc.args[0] :]
                if view and not self.read_done:
                    continue
            except httptools.HttpParserError as exc:
                self._fail(plain_error(400, f"Malformed HTTP request: {limits.reason(exc)}"))
                return
            break
        if self.progress:
            self.stalled_bytes = 0
        elif parsing and self.parsing and seq == self.seq:  # the whole chunk went into one unfinished message
            self.stalled_bytes += len(data)
            if self.stalled_bytes > MAX_HEADER_BYTES:
                self._fail(plain_error(431, "Request header fields too large"))

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.linger is not None:
            return None  # we were only draining: let the transport close
        self._stop_reading()
        if self.active is None and not self.pipeline and not self.writing_paused and self.transport is not None:
            self.transport.close()
        return True  # half-close: the write side stays open to answer what was asked

    def _drained(self) -> None:
        if self.active is None:
            self._next()
        self._maybe_resume_reading()

    # Parser callbacks (only the ones used: each costs a Python call per request)

    def on_message_begin(self) -> None:
        # Kept although it costs a call: only llhttp knows where a message starts (it skips CRLFs
        # between messages, and a method cut at a chunk's end produces no other callback).
        self.seq += 1
        self.url = b""
        self.headers = {}
        self.header_bytes = 0
        self.stalled_bytes = 0
        self.body = None
        self.parsing = True
        self.headers_done = False
        self.started_at = self.last_activity
        self.continue_pending = False
        self.error = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if len(self.url) > MAX_URL_BYTES:
            self._stop(414, f"Request URL too long: the limit is {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES or len(self.headers) >= MAX_HEADERS:
            self._stop(431, "Request header fields too large")
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.headers_done = True
        headers = self.headers
        parser = self.parser
        self.keep_alive = keep_alive = parser.should_keep_alive()
        if keep_alive and b"connection" not in headers:
            # Only HTTP/1.1 keeps a connection open without asking (llhttp accepts 0.9, 1.0, 1.1 and
            # 2.0), so the version is known without get_http_version(), which costs 0.65 us.
            self.http10 = False
        else:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                self._stop(505, f"HTTP version {version} is not supported")
            self.http10 = version == "1.0"
        declared = headers.get(b"content-length")
        length = int(declared) if declared is not None else 0  # llhttp has checked it is all digits
        if length > self.max_body:
            self._stop(413, f"Request body too large: {length} bytes, the limit is {self.max_body}")
        has_body = length > 0 or b"transfer-encoding" in headers
        if has_body and b"upgrade" in headers and b"upgrade" in headers.get(b"connection", b"").lower():
            # llhttp would skip the body of an upgrade request; refuse rather than misread it.
            self._stop(400, "Protocol upgrade is not supported")
        expect = headers.get(b"expect")
        if expect is not None and not self.http10:  # RFC 9110 10.1.1: never a 100 to an HTTP/1.0 client
            if expect.lower() != b"100-continue":
                self._stop(417, "Only 'Expect: 100-continue' is supported")
            if not has_body:
                return  # nothing to wait for
            if self.active is None and not self.pipeline and not self.writing_paused:
                self._write([CONTINUE])
            else:
                self.continue_pending = True  # sent once the responses before it are out (_next)

    def on_body(self, chunk: bytes) -> None:
        self.progress = True
        self.continue_pending = False  # the client did not wait for the 100
        body = self.body
        if body is None:
            # A bytearray (not bytes) so binary tensors viewed over it are writeable and can be
            # shared with OpenVINO without a copy; += grows it amortised, never quadratically.
            body = self.body = bytearray()
        if len(body) + len(chunk) > self.max_body:
            self._stop(413, f"Request body too large: the limit is {self.max_body} bytes")
        body += chunk

    def on_message_complete(self) -> None:
        self.parsing = False
        self.continue_pending = False
        body, self.body = self.body, None
        if body is None:
            quick = self.quick.get(self.url)
            if quick is not None and self._quick(quick):
                return
            body = b""
        request = Request(self.parser.get_method(), self.url, self.headers, body, self.keep_alive, self.http10)
        if not request.keep_alive:
            self._stop_reading()  # the last request: whatever follows is discarded
        if self.active is None and not self.writing_paused and not self.pipeline:
            self._start(request)
        else:
            self.pipeline.append(request)
            self.queued_bytes += len(body)
            if len(self.pipeline) >= limits.MAX_PIPELINE or self.queued_bytes >= limits.MAX_PIPELINE_BYTES:
                self._pause_reading()
        if self.read_done:
            raise StopParsing

    # Request handling

    def _quick(self, answer: Callable[[], Response]) -> bool:
        """App.quick's prebuilt answer (health) with no Request, handler or _send; False if more is due."""
        headers, transport = self.headers, self.transport
        if (self.active is not None or self.pipeline or self.writing_paused or not self.keep_alive or self.http10
                or self.read_done or self.state.shutting_down or b"accept-encoding" in headers
                or b"content-encoding" in headers or self.parser.get_method() != b"GET"):
            return False
        wire = answer().keep_alive_wire
        if wire is None or transport is None or transport.is_closing():
            return False
        transport.write(wire[0])  # last_activity: data_received set it a moment ago, in this same call
        return True

    def _start(self, request: Request) -> None:
        self.active = request
        try:
            result = self.app.handle(request)
        except FastServeError as exc:
            result = error_response(exc)
        except Exception:
            log.exception("unhandled error for %s %s", request.method.decode(), request.url.decode("latin-1"))
            result = plain_error(500, "Internal server error")
        if type(result) is Response:
            self._send(result)
        else:
            task = self.loop.create_task(self._finish(result))
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)

    async def _finish(self, pending: Any) -> None:
        try:
            response = await pending
        except FastServeError as exc:
            response = error_response(exc)
        except Exception:
            request = self.active
            log.exception("unhandled error for %s", request.url.decode("latin-1") if request else "?")
            response = plain_error(500, "Internal server error")
        self._send(response)

    def _send(self, response: Response) -> None:
        request = self.active
        assert request is not None
        self.active = None
        transport = self.transport
        if transport is None or self.linger is not None or transport.is_closing():  # _writable(), inlined
            if response.on_sent is not None:
                response.on_sent()  # nothing will be written: release now
            return
        # The last response before we close says so: the client asked, or we are stopping or no more
        # input will come and nothing else is queued (pipelined requests already in are answered first).
        keep_alive = request.keep_alive and not ((self.state.shutting_down or self.read_done) and not self.pipeline)
        extra = b"" if self.extra_headers is None else self.extra_headers(request)
        parts = response.keep_alive_wire
        if parts is None or not keep_alive or extra or request.http10 or request.method == b"HEAD":
            try:
                parts = response.wire(keep_alive, request.http10, request.method == b"HEAD", extra)
            except Exception:  # e.g. a status with no reason phrase: never leave the client waiting
                log.exception("cannot serialise the response to %s", request.url.decode("latin-1"))
                if response.on_sent is not None:
                    response.on_sent()
                response = plain_error(500, "Internal server error")
                parts = response.wire(keep_alive, request.http10, request.method == b"HEAD")
        if len(parts) == 1:
            transport.write(parts[0])
        else:
            transport.writelines(parts)
        self.last_activity = self.loop.time()  # an idle keep-alive period starts after the response
        if self.state.access_log:
            log.debug('%s "%s %s" %d', limits.peer(transport), request.method.decode(), request.url.decode("latin-1"),
                      response.status)
        if response.on_sent is not None:
            if self.writing_paused:
                self.pending_sent.append(response.on_sent)
            else:
                response.on_sent()
        if not keep_alive:
            self._drop_pipeline()
            self._close()
        elif self.pipeline or self.read_done or self.continue_pending:
            self._next()  # else it would find nothing to do

    def _next(self) -> None:
        """Start the next queued request, or send a pending 100, or close when all is answered."""
        if self.writing_paused or self.active is not None or self.transport is None or self.linger is not None:
            return
        if self.pipeline:
            item = self.pipeline.popleft()
            if type(item) is Response:
                self._send_final(item)
                return
            request = cast(Request, item)
            self.queued_bytes -= len(request.body)
            self._maybe_resume_reading()
            self._start(request)
        elif self.read_done:
            self._close()
        elif self.continue_pending:
            self.continue_pending = False
            self._write([CONTINUE])

    def _send_final(self, response: Response) -> None:
        """An error found while parsing: answered in order, then the connection closes."""
        self._write(response.wire(False, False, False))
        self._drop_pipeline()
        self._close()

    def _stop(self, status: int, message: str) -> None:
        self.error = plain_error(status, message)
        raise StopParsing

    def _fail(self, response: Response) -> None:
        """A request that cannot be parsed: answer it after any earlier one, then close."""
        self._stop_reading()
        self.parsing = False
        self.body = None
        self.continue_pending = False
        if self.active is None and not self.pipeline:
            self._send_final(response)
        else:
            self.pipeline.append(response)

    def _drop_pipeline(self) -> None:
        self.pipeline.clear()
        self.queued_bytes = 0

    def _maybe_resume_reading(self) -> None:
        """Resume once the queue is half empty (hysteresis, so we do not flap per request)."""
        if (
            len(self.pipeline) <= limits.MAX_PIPELINE // 2
            and self.queued_bytes <= limits.MAX_PIPELINE_BYTES // 2
            and self._resume_reading()
        ):
            self.last_activity = now = self.loop.time()  # time paused by us is not the client's delay
            if self.parsing and not self.headers_done:
                self.started_at = now

    def check_timeouts(self, now: float) -> None:  # the server's once-a-second sweep
        check_timeouts(self, now)

    def unfinished(self) -> int:
        return (self.active is not None) + len(self.pipeline) + self.parsing

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """Graceful stop: idle or lingering connections close now, busy ones after their response."""
        transport = self.transport
        if transport is None:
            return
        if self.linger is not None or (self.active is None and not self.pipeline and not self.parsing):
            transport.close()
