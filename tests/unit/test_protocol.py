"""HttpProtocol byte for byte, on a fake transport and a fake app, with a manual clock for timeouts.

The fake transport records what was written and flags any write made after close or after
the write side was shut; the fake app answers at once, or with a future the test resolves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastserve.http import limits
from fastserve.http.protocol import HttpProtocol
from fastserve.http.request import Request
from fastserve.http.response import CONTINUE, Response
from fastserve.http.state import ServerState
from fastserve.settings import ServerSettings

OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


class FakeTransport:
    """Records writes; `blocked` makes writes stall the way uvloop reports it (pause_writing)."""

    def __init__(self) -> None:
        self.protocol: HttpProtocol | None = None
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.blocked = False
        self.paused = False
        self.late_writes: list[bytes] = []  # written after close()/write_eof(): must stay empty
        self.high: int | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed or self.eof_written:
            self.late_writes.append(bytes(data))
            return
        self.out += data
        if self.blocked and not self.paused and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()

    def writelines(self, parts: list[Any]) -> None:
        for part in parts:
            self.write(part)

    def drain(self) -> None:
        """The client read everything: the buffer is empty again."""
        self.blocked = False
        if self.paused and self.protocol is not None:
            self.paused = False
            self.protocol.resume_writing()

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading, "resumed twice"
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 1000 if self.paused else 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


class FakeApp:
    """GET /slow* waits for the test to resolve a future; every other path answers at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.seen: list[Request] = []
        self.futures: list[asyncio.Future[Response]] = []
        self.on_sent: Callable[[], None] | None = None

    def handle(self, request: Request) -> Response | asyncio.Future[Response]:
        self.seen.append(request)
        if request.url.startswith(b"/slow"):
            future: asyncio.Future[Response] = self.loop.create_future()
            self.futures.append(future)
            return future
        if request.url == b"/boom":
            raise RuntimeError("handler bug")
        body = json.dumps({"path": request.url.decode(), "body": len(request.body)}).encode()
        return Response(200, body, on_sent=self.on_sent)

    def extra_headers(self, request: Request | None) -> bytes:
        return b""


class Harness:
    made: list[Harness] = []  # every harness of the running test, checked for late writes

    def __init__(self, loop: asyncio.AbstractEventLoop, **settings: Any) -> None:
        Harness.made.append(self)
        self.loop = loop
        self.state = ServerState(dataclasses.replace(ServerSettings(), **settings), loop)
        self.app = FakeApp(loop)
        self.transport = FakeTransport()
        self.protocol = HttpProtocol(self.app, self.state)
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.protocol.data_received(chunk)

    def resolve(self, index: int, response: Response) -> None:
        self.app.futures[index].set_result(response)
        self.settle()

    def settle(self) -> None:
        for _ in range(5):
            self.loop.run_until_complete(asyncio.sleep(0))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    Harness.made.clear()
    yield loop
    for harness in Harness.made:
        assert harness.transport.late_writes == [], "bytes written after close"
    pending = asyncio.all_tasks(loop)  # handlers of futures a test left unresolved
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending))
    loop.close()


@pytest.fixture
def h(loop: asyncio.AbstractEventLoop) -> Harness:
    return Harness(loop, max_request_size=1000)


def response(path: str, body: int = 0, connection: bytes = b"") -> bytes:
    payload = json.dumps({"path": path, "body": body}).encode()
    return OK_HEAD + b"content-length: %d\r\n%s\r\n%s" % (len(payload), connection, payload)


def split_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) pairs, using each head's Content-Length."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b": ")
            if name == b"content-length":
                length = int(value)
        out.append((head, rest[:length]))
        data = rest[length:]
    return out


GET_A = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
GET_SLOW = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"


def test_get(h: Harness) -> None:
    h.feed(GET_A)
    assert h.transport.take() == response("/a")
    assert h.transport.high == 0 and h.transport.reading and not h.transport.closed


def test_head_keeps_content_length_without_body(h: Harness) -> None:
    h.feed(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h.transport.take() == response("/a").partition(b"\r\n\r\n")[0] + b"\r\n\r\n"


def test_http10_closes_unless_keep_alive(h: Harness, loop: asyncio.AbstractEventLoop) -> None:
    h.feed(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert h.transport.take() == response("/a", connection=b"connection: keep-alive\r\n")
    assert not h.transport.eof_written
    h.feed(b"GET /b HTTP/1.0\r\n\r\n")
    assert h.transport.take() == response("/b", connection=b"connection: close\r\n")
    assert h.transport.eof_written and not h.transport.closed  # lingering: our FIN first
    h.protocol.eof_received()  # the client closes too


def test_connection_close_discards_a_second_request(h: Harness) -> None:
    h.feed(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n" + GET_B)
    assert h.transport.take() == response("/a", connection=b"connection: close\r\n")
    h.feed(GET_B)  # still arriving while we linger: drained, never answered
    assert [r.url for r in h.app.seen] == [b"/a"]
    assert h.transport.eof_written and h.transport.out == b""
    assert h.protocol.eof_received() is None  # lets the transport close


def test_pipelining_keeps_order_around_an_awaitable(h: Harness) -> None:
    h.feed(GET_SLOW + GET_A + GET_B)
    assert h.transport.out == b""
    assert [r.url for r in h.app.seen] == [b"/slow"]  # the rest wait their turn
    h.resolve(0, Response(200, b'{"slow":1}'))
    out = h.transport.take()
    assert out == OK_HEAD + b'content-length: 10\r\n\r\n{"slow":1}' + response("/a") + response("/b")
    assert [r.url for r in h.app.seen] == [b"/slow", b"/a", b"/b"]


def test_pipeline_high_water_pauses_reading(h: Harness) -> None:
    h.feed(GET_SLOW + GET_A * (limits.MAX_PIPELINE + 2))
    assert not h.transport.reading
    h.resolve(0, Response(200))
    assert h.transport.reading
    assert len(split_responses(h.transport.take())) == limits.MAX_PIPELINE + 3


def test_chunked_body(h: Harness) -> None:
    h.feed(
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n",
        b"X-Checksum: 1\r\n\r\n",  # a trailer
    )
    assert h.app.seen[0].body == b"hello world"
    assert h.transport.take() == response("/c", 11)


def test_body_over_limit_is_413_for_length_and_chunked(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop, max_request_size=10)
    h.feed(b"POST /c HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    head, body = split_responses(h.transport.take())[0]
    assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head
    assert "limit is 10" in json.loads(body)["error"]
    assert h.transport.eof_written and h.app.seen == []

    h = Harness(loop, max_request_size=10)
    h.feed(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello!\r\n", b"6\r\nhello!\r\n")
    assert h.transport.take().startswith(b"HTTP/1.1 413 ")
    assert h.app.seen == [] and h.transport.eof_written


def test_expect_100_continue(h: Harness) -> None:
    h.feed(b"POST /c HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert h.transport.take() == CONTINUE
    h.feed(b"hello")
    assert h.transport.take() == response("/c", 5)


def test_expect_100_continue_too_large_gets_413_without_100(h: Harness) -> None:
    h.feed(b"POST /c HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    out = h.transport.take()
    assert out.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n") and CONTINUE not in out
    assert h.transport.eof_written


def test_continue_pending_waits_for_earlier_responses(h: Harness) -> None:
    h.feed(GET_SLOW, b"POST /c HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert h.transport.out == b""  # a 100 now would overtake the slow response
    h.resolve(0, Response(200))
    assert h.transport.take() == OK_HEAD + b"content-length: 0\r\n\r\n" + CONTINUE
    h.feed(b"ok")
    assert h.transport.take() == response("/c", 2)


def test_body_sent_without_waiting_cancels_the_100(h: Harness) -> None:
    h.feed(GET_SLOW + b"POST /c HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok" + GET_A)
    h.resolve(0, Response(200))
    assert CONTINUE not in h.transport.out
    assert len(split_responses(h.transport.take())) == 3


@pytest.mark.parametrize(
    "data",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"GET /\x01 HTTP/1.1\r\n\r\n",
     b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"],
)
def test_malformed_is_400_json_and_close(h: Harness, data: bytes) -> None:
    h.feed(data)
    head, body = split_responses(h.transport.take())[0]
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n")
    assert b"connection: close" in head
    assert json.loads(body)["error"].startswith("Malformed HTTP request")
    assert h.transport.eof_written and h.app.seen == []
    h.feed(GET_A)  # ignored
    assert h.transport.out == b""


def test_parse_error_while_a_request_is_active_answers_in_order(h: Harness) -> None:
    h.feed(GET_SLOW + GET_A + b"NOT HTTP\r\n\r\n")
    assert h.transport.out == b"" and not h.transport.reading
    h.resolve(0, Response(200))
    (h1, _), (h2, _), (h3, b3) = split_responses(h.transport.take())
    assert h1.startswith(b"HTTP/1.1 200") and b"connection" not in h1
    assert h2.startswith(b"HTTP/1.1 200") and b"connection" not in h2
    assert h3.startswith(b"HTTP/1.1 400") and h3.endswith(b"connection: close")
    assert "error" in json.loads(b3)
    assert h.transport.eof_written


def test_handler_exception_is_500_and_connection_stays(h: Harness) -> None:
    h.feed(b"GET /boom HTTP/1.1\r\n\r\n" + GET_A)
    (h1, b1), (h2, _) = split_responses(h.transport.take())
    assert h1.startswith(b"HTTP/1.1 500") and json.loads(b1) == {"error": "Internal server error"}
    assert h2.startswith(b"HTTP/1.1 200")


def test_unwritable_response_becomes_500(h: Harness) -> None:
    released: list[int] = []
    h.feed(GET_SLOW + GET_A)
    h.resolve(0, Response(299, b"x", on_sent=lambda: released.append(1)))  # 299 has no status line
    (h1, b1), (h2, _) = split_responses(h.transport.take())
    assert h1.startswith(b"HTTP/1.1 500 ") and json.loads(b1) == {"error": "Internal server error"}
    assert h2.startswith(b"HTTP/1.1 200 ") and released == [1]


def test_on_sent_runs_only_after_drain(h: Harness) -> None:
    sent: list[int] = []
    h.app.on_sent = lambda: sent.append(1)
    h.transport.blocked = True
    h.feed(GET_A + GET_B)
    assert h.transport.take() == response("/a")  # /b is parsed but not started while paused
    assert sent == [] and not h.transport.reading and [r.url for r in h.app.seen] == [b"/a"]
    h.transport.drain()
    assert sent == [1, 1] and h.transport.reading
    assert h.transport.take() == response("/b")


def test_write_stall_is_aborted_after_body_timeout(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop, body_timeout=5.0)
    sent: list[int] = []
    h.app.on_sent = lambda: sent.append(1)
    h.transport.blocked = True
    h.feed(GET_A)
    now = loop.time()
    h.protocol.check_timeouts(now + 1)
    h.protocol.check_timeouts(now + 4)
    assert not h.transport.aborted
    h.protocol.check_timeouts(now + 7)
    assert h.transport.aborted
    h.protocol.connection_lost(None)
    assert sent == [1]  # the response's memory is released when the connection goes

    h = Harness(loop, body_timeout=5.0)  # the last response (then lingering) to a reader that stalls
    h.transport.blocked = True
    h.feed(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert h.transport.eof_written and h.transport.reading  # draining input while the response waits
    h.protocol.check_timeouts(now + 1)
    h.protocol.check_timeouts(now + 7)
    assert h.transport.aborted


def test_connection_lost_mid_body_and_mid_handler(h: Harness) -> None:
    h.feed(GET_SLOW, b"POST /c HTTP/1.1\r\nContent-Length: 100\r\n\r\nhalf")
    assert h.state.connections == {h.protocol}
    h.protocol.connection_lost(ConnectionResetError())
    assert h.state.connections == set() and h.protocol.body is None and not h.protocol.pipeline
    released: list[int] = []
    h.resolve(0, Response(200, b"x", on_sent=lambda: released.append(1)))
    assert released == [1] and h.transport.out == b""  # nothing written, memory released


def test_eof_answers_what_was_asked_then_closes(h: Harness) -> None:
    h.feed(GET_SLOW + GET_A)
    assert h.protocol.eof_received() is True  # keep our write side open
    h.resolve(0, Response(200))
    (h1, _), (h2, _) = split_responses(h.transport.take())
    assert b"connection" not in h1 and h2.endswith(b"connection: close")
    assert h.transport.closed  # the client already sent its FIN: no lingering


def test_eof_when_idle_closes(h: Harness) -> None:
    h.feed(GET_A)
    h.protocol.eof_received()
    assert h.transport.closed


def test_bytes_one_at_a_time(h: Harness) -> None:
    request = b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    h.feed(*(request[i : i + 1] for i in range(len(request))))
    assert h.transport.take() == response("/c", 3)


def test_url_too_long_is_414(h: Harness) -> None:
    h.feed(b"GET /" + b"a" * limits.MAX_URL_BYTES + b" HTTP/1.1\r\n\r\n")
    assert h.transport.take().startswith(b"HTTP/1.1 414 Request-URI Too Long\r\n")


def test_header_too_large_is_431_in_one_chunk_and_dribbled(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop)
    h.feed(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (limits.MAX_HEADER_BYTES + 1) + b"\r\n\r\n")
    assert h.transport.take().startswith(b"HTTP/1.1 431 ")
    # One endless header value in small pieces: httptools buffers it, so we must count the chunks.
    h = Harness(loop)
    h.feed(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(limits.MAX_HEADER_BYTES // 4096 + 1):
        h.feed(b"a" * 4096)
    assert h.transport.take().startswith(b"HTTP/1.1 431 ")
    assert h.transport.eof_written
    # The same in a chunked body's trailers; big body chunks themselves never count.
    h = Harness(loop, max_request_size=1 << 20)
    h.feed(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(4):
        h.feed(b"10000\r\n" + b"b" * 0x10000 + b"\r\n")
    h.feed(b"0\r\nX-Trailer: ")
    assert h.transport.out == b""
    for _ in range(limits.MAX_HEADER_BYTES // 4096 + 1):
        h.feed(b"t" * 4096)
    assert h.transport.take().startswith(b"HTTP/1.1 431 ")


def test_timeouts_on_a_manual_clock(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop, header_timeout=2.0, body_timeout=3.0, keep_alive_timeout=5.0)
    now = loop.time()
    h.feed(b"GET / HTTP/1.1\r\nHost")  # slowloris
    h.protocol.check_timeouts(now + 1.5)
    assert h.transport.out == b""
    h.protocol.check_timeouts(now + 2.5)
    assert h.transport.take().startswith(b"HTTP/1.1 408 Request Timeout\r\n") and h.transport.eof_written

    # CRLFs between requests are not a message (RFC 9112 2.2): the connection stays idle, not late.
    h = Harness(loop, header_timeout=2.0, body_timeout=3.0, keep_alive_timeout=5.0)
    h.feed(GET_A)
    h.transport.take()
    h.feed(b"\r\n")
    h.protocol.check_timeouts(now + 4)
    assert h.transport.out == b"" and not h.transport.closed
    h.protocol.check_timeouts(now + 6)
    assert h.transport.out == b"" and h.transport.closed  # the keep-alive timeout, with no 408

    # So is a pipelined request cut inside its method.
    h = Harness(loop, header_timeout=2.0, body_timeout=3.0, keep_alive_timeout=5.0)
    h.feed(GET_A + b"GE")
    h.transport.take()
    h.protocol.check_timeouts(now + 2.5)
    assert h.transport.take().startswith(b"HTTP/1.1 408 Request Timeout\r\n")

    # A request line cut inside the method (no parser callback has run yet) is a started message too.
    h = Harness(loop, header_timeout=2.0, body_timeout=3.0, keep_alive_timeout=5.0)
    h.feed(b"GE")
    h.protocol.check_timeouts(now + 2.5)
    assert h.transport.take().startswith(b"HTTP/1.1 408 Request Timeout\r\n") and h.transport.eof_written

    h = Harness(loop, header_timeout=2.0, body_timeout=3.0, keep_alive_timeout=5.0)
    h.feed(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc")
    h.protocol.check_timeouts(now + 2.5)
    assert h.transport.out == b""
    h.protocol.check_timeouts(now + 3.5)
    head, body = split_responses(h.transport.take())[0]
    assert head.startswith(b"HTTP/1.1 408 ") and "body" in json.loads(body)["error"]

    h = Harness(loop, header_timeout=2.0, body_timeout=3.0, keep_alive_timeout=5.0)
    h.feed(GET_A)
    h.protocol.check_timeouts(now + 4)
    assert not h.transport.closed
    h.protocol.check_timeouts(now + 6)
    assert h.transport.closed and h.transport.take() == response("/a")


def test_no_read_timeouts_while_we_paused_reading(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop, header_timeout=1.0, keep_alive_timeout=1.0)
    h.feed(GET_SLOW + GET_A * limits.MAX_PIPELINE + b"GET / HT")
    assert not h.transport.reading
    h.protocol.check_timeouts(loop.time() + 10)
    assert h.transport.out == b"" and not h.transport.closed


def test_too_many_connections_is_503_and_close(loop: asyncio.AbstractEventLoop) -> None:
    first = Harness(loop, max_connections=1)
    second = HttpProtocol(first.app, first.state)
    transport = FakeTransport()
    second.connection_made(transport)  # type: ignore[arg-type]
    head, body = split_responses(transport.take())[0]
    assert head.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head and b"connection: close" in head
    assert json.loads(body) == {"error": "Too many connections"}
    assert transport.closed and first.state.connections == {first.protocol}
    second.data_received(GET_A)  # never parsed
    assert first.app.seen == []


def test_upgrade_is_ignored_and_parsing_goes_on(h: Harness) -> None:
    h.feed(b"GET /a HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + GET_B)
    assert h.transport.take() == response("/a") + response("/b")
    h.feed(b"POST /c HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi")
    assert h.transport.take().startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        # Keep-alive asked for explicitly: the version cannot be told from should_keep_alive() alone.
        (b"GET / HTTP/2.0\r\nConnection: keep-alive\r\n\r\n", b"505"),
        (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", b"505"),
        (b"POST / HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", b"417"),
        (b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n", b"417"),  # a lone header is checked too
    ],
)
def test_unsupported_version_and_expectation(h: Harness, data: bytes, status: bytes) -> None:
    h.feed(data)
    assert h.transport.take().startswith(b"HTTP/1.1 " + status)


def test_shutdown_closes_idle_and_busy_after_response(h: Harness) -> None:
    h.feed(GET_SLOW)
    h.state.shutting_down = True
    h.protocol.shutdown()
    assert not h.transport.closed
    h.resolve(0, Response(200))
    assert h.transport.take().endswith(b"connection: close\r\n\r\n")
    h.protocol.shutdown()  # lingering connections close at once on shutdown
    assert h.transport.closed


def test_quick_answers_skip_the_app_only_when_nothing_else_is_due(loop: asyncio.AbstractEventLoop) -> None:
    fixed = Response.fixed(200, b'{"live":true}')
    h = Harness(loop)
    h.protocol.quick = {b"/q": lambda: fixed}  # what App.quick holds for the health URLs
    h.feed(b"GET /q HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h.transport.take() == fixed.keep_alive_wire[0] and h.app.seen == []  # type: ignore[index]
    # Anything that needs more than the prebuilt bytes takes the app's path, in order.
    for request in (
        b"HEAD /q HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /q HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /q HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
        b"GET /q HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ):
        h.feed(request)
    assert [r.method for r in h.app.seen] == [b"HEAD", b"POST", b"GET", b"GET", b"GET"]
    h.transport.take()
    h.feed(GET_SLOW + b"GET /q HTTP/1.1\r\nHost: x\r\n\r\n")  # behind a pending request: queued, not first
    assert h.transport.take() == b"" and len(h.app.seen) == 6
    h.resolve(0, Response(200, b"{}"))
    assert len(h.app.seen) == 7
    assert [body for _, body in split_responses(h.transport.take())] == [b"{}", b'{"path": "/q", "body": 0}']
    h.feed(b"GET /q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # the last response says close
    assert b"connection: close" in h.transport.take() and len(h.app.seen) == 8


def test_quick_answers_are_off_with_the_access_log(loop: asyncio.AbstractEventLoop) -> None:
    class QuickApp(FakeApp):
        quick = {b"/q": lambda: Response.fixed(200)}

    state = ServerState(dataclasses.replace(ServerSettings(), log_level="DEBUG"), loop)
    assert HttpProtocol(QuickApp(loop), state).quick == {}
    assert HttpProtocol(QuickApp(loop), ServerState(ServerSettings(), loop)).quick == QuickApp.quick
