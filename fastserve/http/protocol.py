"""HttpProtocol: one asyncio.Protocol per connection, parsing with httptools.

Rules: owns the connection's bytes and state only. It hands each complete request to
`app.handle(request)` (a Response, or an awaitable of one) and writes responses in request
order. Knows nothing of KServe, numpy or OpenVINO.

Flow control: the write-buffer high-water mark is 0, so pause_writing fires whenever a
response did not go out whole. While paused we read nothing more and start no pipelined
request, so a slow reader costs at most one buffered response; resume_writing (buffer empty)
runs the responses' on_sent hooks, which is when zero-copy tensor memory may be reused.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from fastserve.errors import FastServeError
from fastserve.http.request import Request
from fastserve.http.response import CONTINUE, Response, error_response, plain_error

if TYPE_CHECKING:
    from fastserve.http.state import ServerState

log = logging.getLogger("fastserve.http")

# Header block limit: Triton/nginx use 8-16 KiB per line; 64 KiB in total is generous for KServe clients.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
# Pipelined requests parsed ahead of the one being answered; beyond this we stop reading.
MAX_PIPELINE = 16


class _StopParsing(Exception):
    """Raised from a parser callback to stop feeding: the response is already decided."""


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "app", "state", "loop", "parser", "transport",
        "pipeline", "active", "reading_paused", "writing_paused", "pending_sent", "closing", "last_activity",
        "url", "headers", "header_bytes", "body", "parsing", "headers_done", "started_at", "continue_pending",
        "error", "max_body",
    )  # fmt: skip

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.loop = state.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # Per-connection state
        self.pipeline: deque[Request | Response] = deque()
        self.active: Request | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.pending_sent: list[Any] = []
        self.closing = False
        self.last_activity = 0.0
        self.max_body = state.settings.max_request_size
        # Per-request state (the request being parsed)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.body: bytearray | None = None
        self.parsing = False
        self.headers_done = False
        self.started_at = 0.0
        self.continue_pending = False
        self.error: Response | None = None

    # Connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        self.last_activity = self.loop.time()
        if len(self.state.connections) >= self.state.settings.max_connections or self.state.shutting_down:
            response = plain_error(503, "Too many connections" if not self.state.shutting_down else "Shutting down")
            transport.writelines(response.wire(False, False, False))
            transport.close()
            self.transport = None
            return
        self.state.connections.add(self)
        transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.transport = None
        self.pipeline.clear()
        self._run_pending_sent()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except _StopParsing:
            self._fail(self.error)
        except httptools.HttpParserCallbackError:
            self._fail(self.error or plain_error(400, "Malformed HTTP request"))
        except httptools.HttpParserUpgrade:
            if self.parsing:
                self._fail(plain_error(400, "Protocol upgrade is not supported"))
            else:
                self.closing = True  # served as plain HTTP/1.1; the parser cannot go on after an upgrade
        except httptools.HttpParserError as exc:
            self._fail(plain_error(400, f"Malformed HTTP request: {_reason(exc)}"))

    def eof_received(self) -> bool | None:
        # Half-close: finish what was asked, then close (returning True keeps the write side open).
        self.closing = True
        if self.active is None and not self.pipeline and self.transport is not None:
            self.transport.close()
        return True

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._run_pending_sent()
        if self.active is None:
            self._next()
        if not self.writing_paused and len(self.pipeline) < MAX_PIPELINE:
            self._resume_reading()

    # Parser callbacks (only the ones used)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.header_bytes = 0
        self.body = None
        self.parsing = True
        self.headers_done = False
        self.started_at = self.last_activity
        self.error = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            self._stop(414, "Request URL too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES or len(self.headers) >= MAX_HEADERS:
            self._stop(431, "Request header fields too large")
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.headers_done = True
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            self._stop(413, f"Request body too large: {int(declared)} bytes, the limit is {self.max_body}")
        if self.headers.get(b"expect", b"").lower() == b"100-continue":
            if self.active is None and not self.pipeline and self.transport is not None:
                self.transport.write(CONTINUE)
            else:
                self.continue_pending = True

    def on_body(self, chunk: bytes) -> None:
        body = self.body
        if body is None:
            # A bytearray (not bytes) so binary tensors viewed over it are writeable and can be
            # shared with OpenVINO without a copy; += grows it amortised, never quadratically.
            self.body = bytearray(chunk)
        else:
            body += chunk
        if len(self.body) > self.max_body:  # type: ignore[arg-type]
            self._stop(413, f"Request body too large: the limit is {self.max_body} bytes")

    def on_message_complete(self) -> None:
        self.parsing = False
        if self.closing and self.transport is None:
            return
        parser = self.parser
        request = Request(
            parser.get_method(),
            self.url,
            self.headers,
            self.body if self.body is not None else b"",
            parser.should_keep_alive(),
            parser.get_http_version() == "1.0",
        )
        if self.active is None and not self.writing_paused and not self.pipeline:
            self._start(request)
        else:
            self.pipeline.append(request)
            if len(self.pipeline) >= MAX_PIPELINE:
                self._pause_reading()

    # Request handling

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
        self.active = None
        transport = self.transport
        if transport is None or transport.is_closing():
            if response.on_sent is not None:
                response.on_sent()
            return
        keep_alive = request is not None and request.keep_alive and not self.closing and not self.state.shutting_down
        http10 = request is not None and request.http10
        head_only = request is not None and request.method == b"HEAD"
        transport.writelines(response.wire(keep_alive, http10, head_only, self.app.extra_headers(request)))
        if self.state.access_log and request is not None:
            log.debug('%s "%s %s" %d', _peer(transport), request.method.decode(), request.url.decode("latin-1"),
                      response.status)
        if response.on_sent is not None:
            if self.writing_paused:
                self.pending_sent.append(response.on_sent)
            else:
                response.on_sent()
        if not keep_alive:
            self.closing = True
            self.pipeline.clear()
            transport.close()
            return
        self._next()

    def _next(self) -> None:
        if self.writing_paused or self.transport is None:
            return
        if self.pipeline:
            item = self.pipeline.popleft()
            if type(item) is Response:
                self.active = None
                self._send_final(item)
            else:
                assert isinstance(item, Request)
                self._start(item)
            if len(self.pipeline) < MAX_PIPELINE // 2 and not self.writing_paused:
                self._resume_reading()
        elif self.continue_pending and self.parsing:
            self.continue_pending = False
            self.transport.write(CONTINUE)
        elif self.closing and not self.parsing:
            self.transport.close()

    def _send_final(self, response: Response) -> None:
        """An error found while parsing: answered in order, then the connection closes."""
        if self.transport is not None:
            self.transport.writelines(response.wire(False, False, False))
            self.transport.close()

    def _stop(self, status: int, message: str) -> None:
        self.error = plain_error(status, message)
        raise _StopParsing

    def _fail(self, response: Response | None) -> None:
        """A request that cannot be parsed: answer it after any in-flight one, then close."""
        assert response is not None
        self.closing = True
        self.parsing = False
        self._pause_reading()
        if self.active is None and not self.pipeline:
            self._send_final(response)
        else:
            self.pipeline.append(response)

    def _run_pending_sent(self) -> None:
        pending, self.pending_sent = self.pending_sent, []
        for callback in pending:
            callback()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    # Timeouts (called by the server's once-a-second sweep)

    def check_timeouts(self, now: float) -> None:
        settings = self.state.settings
        if self.transport is None:
            return
        if self.parsing:
            if not self.headers_done and now - self.started_at > settings.header_timeout:
                self._fail(plain_error(408, "Timed out waiting for the request headers"))
            elif self.headers_done and now - self.last_activity > settings.body_timeout:
                self._fail(plain_error(408, "Timed out waiting for the request body"))
        elif self.active is None and not self.pipeline and now - self.last_activity > settings.keep_alive_timeout:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.closing = True
        if self.active is None and not self.pipeline and not self.parsing and self.transport is not None:
            self.transport.close()


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _peer(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
