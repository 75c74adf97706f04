"""A raw HTTP/2 client for gRPC tests (the `h2` state machine over a blocking socket).

For what no gRPC client library sends: a length prefix without its message, an unknown
grpc-encoding, GET, a wrong content-type, a reset in the middle of a request, a PING; and to
see what the server sends at the frame level (SETTINGS, GOAWAY, its own PINGs). Every read
has a timeout, so a server that does not answer fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes

GRPC_HEADERS = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


class RawH2:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        # As gRPC clients do: without it Nagle holds a write back until the server's delayed
        # ACK of the previous one (~40 ms), so calls "sent together" would arrive apart.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        config = H2Configuration(client_side=True, header_encoding=None)
        self.conn = H2Connection(config)
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})  # big replies in one go
        self.events: list[Any] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, body: bytes | None = None, end: bool = True, method: bytes = b"POST",
                headers: list[tuple[bytes, bytes]] | None = None) -> int:
        """Open a stream: headers (grpc's unless given), then `body` as it is (already framed)."""
        sid = self.conn.get_next_available_stream_id()
        base = [(b":method", method), (b":scheme", b"http"), (b":path", path.encode()), (b":authority", b"test")]
        self.conn.send_headers(sid, base + (GRPC_HEADERS if headers is None else headers),
                               end_stream=body is None and end)
        if body is not None:
            self.send(sid, body, end)
        self.flush()
        return sid

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        """DATA within the server's windows (read until they open), then END_STREAM if `end`."""
        deadline = time.monotonic() + self.timeout
        while data:
            size = min(len(data), self.conn.max_outbound_frame_size, self.conn.local_flow_control_window(sid))
            if size <= 0:
                assert time.monotonic() < deadline and not self.closed, "the server's window never opened"
                self.flush()
                self.read()
                continue
            try:
                self.conn.send_data(sid, data[:size])
            except StreamClosedError:  # the server answered and reset the stream: stop sending
                self.flush()
                return
            data = data[size:]
        if end:
            self.conn.end_stream(sid)
        self.flush()

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid)
        self.flush()

    def read(self) -> list[Any]:
        """One read's events (data acknowledged); [] once the server closed the connection."""
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.flush()
        self.events += events
        return events

    def wait(self, done: Any, timeout: float | None = None) -> list[Any]:
        """Read until `done(events so far)` holds or the connection closes; AssertionError on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not done(self.events):
            if self.closed:
                break
            assert time.monotonic() < deadline, f"no answer in time: {self.events}"
            self.read()
        return self.events

    def answer(self, sid: int) -> dict[str, Any]:
        """The stream's headers, trailers and DATA, once it ended or was reset."""

        def finished(events: list[Any]) -> bool:
            return any(isinstance(e, (StreamEnded, StreamReset)) and e.stream_id == sid for e in events) or any(
                isinstance(e, ConnectionTerminated) for e in events)

        self.wait(finished)
        found: dict[str, Any] = {"headers": {}, "trailers": {}, "data": b"", "reset": None}
        for event in self.events:
            if getattr(event, "stream_id", None) != sid:
                continue
            if isinstance(event, ResponseReceived):
                found["headers"] = dict(event.headers)
            elif isinstance(event, TrailersReceived):
                found["trailers"] = dict(event.headers)
            elif isinstance(event, DataReceived):
                found["data"] += event.data
            elif isinstance(event, StreamReset):
                found["reset"] = event.error_code
        # A trailers-only answer carries the status in its one HEADERS frame.
        found["status"] = found["trailers"].get(b"grpc-status", found["headers"].get(b"grpc-status"))
        found["message"] = found["trailers"].get(b"grpc-message", found["headers"].get(b"grpc-message", b""))
        return found

    def close(self) -> None:
        self.sock.close()
