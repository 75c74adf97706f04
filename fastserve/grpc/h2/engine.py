"""HTTP/2 for gRPC's needs, by hand: frames in and out, stream states, flow control both ways.

Rules: the server side of RFC 9113 that gRPC uses. `receive` parses what the socket gave and
calls the handler (grpc/h2/protocol.py) per event: `on_headers(sid, headers, fields,
end_stream)`, `on_data(sid, piece)` (DATA arrives in pieces as the socket gives them: a
message is never copied here), `on_end(sid)`, `on_reset(sid)`, `on_window(sid)` (0: the whole
connection), `on_ping_ack()`, `on_goaway()`. A peer that breaks the protocol gets
`ProtocolError` (the handler answers GOAWAY and closes). The `send_*` methods only append
frames to `out`; the handler writes `out` once per read. PRIORITY is ignored; PUSH_PROMISE
from a client is an error. Header blocks are decoded by grpc/h2/hpackin.py; the server's
header blocks are pre-built (grpc/h2/hpackout.py).
"""

from __future__ import annotations

import struct
from typing import Any

from fastserve.grpc.h2.codes import (
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    ProtocolError,
)
from fastserve.grpc.h2.hpackin import HeaderDecoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEAD = struct.Struct(">IBI")  # length << 8 | type, flags, stream id
DATA_HEAD = struct.Struct(">IBIBI")  # a DATA frame's head and a gRPC message's prefix together
SETTING = struct.Struct(">HI")
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
DEFAULT_WINDOW = 65535  # every window starts here, whatever SETTINGS say later
MAX_WINDOW = (1 << 31) - 1
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT, INITIAL_WINDOW, MAX_FRAME_SIZE, MAX_HEADER_LIST = range(1, 7)


class Stream:
    __slots__ = ("window", "received", "remote_closed", "local_closed")

    def __init__(self, window: int) -> None:
        self.window = window  # what we may still send
        self.received = 0  # bytes received since our last WINDOW_UPDATE for it
        self.remote_closed = False
        self.local_closed = False


class Engine:
    def __init__(self, handler: Any, max_frame: int, stream_window: int, connection_window: int,
                 max_streams: int | None, max_header_list: int = 1 << 16) -> None:
        self.handler = handler
        self.out: list[Any] = []
        self.streams: dict[int, Stream] = {}
        self.highest = 0  # the highest stream id the client opened
        self.max_frame = max_frame  # the largest frame we accept
        self.stream_window = stream_window  # our INITIAL_WINDOW_SIZE
        self.connection_window = connection_window
        self.received = 0  # on the connection, since our last WINDOW_UPDATE
        self.max_streams = max_streams  # in force once the client acknowledges our SETTINGS
        self.limit_on = False
        self.peer_window = DEFAULT_WINDOW  # the client's INITIAL_WINDOW_SIZE
        self.send_window = DEFAULT_WINDOW  # the connection's, for what we send
        self.peer_max_frame = 16384
        self.table_reset = b""  # b"\x20" once the client allows a smaller HPACK table than 4096
        self.headers = HeaderDecoder(max_header_list)
        self.pending = bytearray()  # an incomplete frame (or frame head) from the last reads
        self.need = 0  # bytes `pending` must reach before it is parsed (appends are linear, not quadratic)
        self.preface = True  # the client's preface and first SETTINGS still to come
        self.data_left = 0  # payload bytes of the DATA frame being received
        self.pad_left = 0
        self.data_sid = 0  # its stream (0: discarded, a stream already closed)
        self.data_end = False
        self.block: list[bytes] | None = None  # a header block waiting for CONTINUATION
        self.block_sid = 0
        self.block_end = False
        settings = [(MAX_HEADER_LIST, max_header_list), (INITIAL_WINDOW, stream_window), (MAX_FRAME_SIZE, max_frame)]
        if max_streams is not None:
            settings.insert(0, (MAX_CONCURRENT, max_streams))
        body = b"".join(SETTING.pack(key, value) for key, value in settings)
        self.out.append(HEAD.pack(len(body) << 8 | SETTINGS, 0, 0) + body)
        if connection_window > DEFAULT_WINDOW:
            increment = connection_window - DEFAULT_WINDOW
            self.out.append(HEAD.pack(4 << 8 | WINDOW_UPDATE, 0, 0) + increment.to_bytes(4, "big"))

    # In

    def receive(self, data: bytes) -> None:
        if self.pending:
            self.pending += data
            if len(self.pending) < self.need:
                return
            data, self.pending = bytes(self.pending), bytearray()
        pos, end = 0, len(data)
        if self.preface:
            if end < 24 + 9:
                if not PREFACE.startswith(data[:24]):
                    raise ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                self._keep(data, 24 + 9)
                return
            if data[:24] != PREFACE or data[27] != SETTINGS:
                raise ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 connection preface and SETTINGS")
            self.preface = False
            pos = 24
        handler = self.handler
        while pos < end:
            if self.data_left or self.pad_left:
                take = min(self.data_left, end - pos)
                if take:
                    if self.data_sid:  # the read itself, or a view of it: a slice of bytes would copy
                        piece = data if take == end and not pos else memoryview(data)[pos:pos + take]
                        handler.on_data(self.data_sid, piece)
                    pos += take
                    self.data_left -= take
                skip = min(self.pad_left, end - pos)
                pos += skip
                self.pad_left -= skip
                if self.data_left or self.pad_left:
                    return
                if self.data_end and self.data_sid:
                    self._remote_end(self.data_sid)
                continue
            if end - pos < 9:
                self._keep(data[pos:], 9)
                return
            length_kind, flags, sid = HEAD.unpack_from(data, pos)
            length, kind, sid = length_kind >> 8, length_kind & 0xFF, sid & 0x7FFFFFFF
            if length > self.max_frame:
                raise ProtocolError(FRAME_SIZE_ERROR, f"a frame of {length} bytes (our limit {self.max_frame})")
            if self.block is not None and kind != CONTINUATION:
                raise ProtocolError(PROTOCOL_ERROR, "a header block without its CONTINUATION")
            if kind == DATA:
                if flags & PADDED and length and end - pos < 10:
                    self._keep(data[pos:], 10)
                    return
                pos += 9
                self._data_start(sid, length, flags, data[pos] if flags & PADDED and length else -1)
                if flags & PADDED and length:
                    pos += 1
                if not self.data_left and not self.pad_left and self.data_end and self.data_sid:
                    self._remote_end(self.data_sid)
                continue
            if end - pos < 9 + length:
                self._keep(data[pos:], 9 + length)
                return
            payload = data[pos + 9:pos + 9 + length]
            pos += 9 + length
            if kind == HEADERS:
                self._headers(sid, flags, payload)
            elif kind == CONTINUATION:
                if self.block is None or sid != self.block_sid:
                    raise ProtocolError(PROTOCOL_ERROR, "CONTINUATION without HEADERS before it")
                self.block.append(payload)
                if flags & END_HEADERS:
                    block, self.block = b"".join(self.block), None
                    self._header_block(sid, block, self.block_end)
            elif kind == SETTINGS:
                self._settings(sid, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._window_update(sid, payload)
            elif kind == PING:
                if sid or length != 8:
                    raise ProtocolError(PROTOCOL_ERROR if sid else FRAME_SIZE_ERROR, "a malformed PING")
                if flags & ACK:
                    handler.on_ping_ack()
                else:
                    self.out.append(HEAD.pack(8 << 8 | PING, ACK, 0) + payload)
            elif kind == RST_STREAM:
                if not sid or length != 4:
                    raise ProtocolError(PROTOCOL_ERROR if not sid else FRAME_SIZE_ERROR, "a malformed RST_STREAM")
                if sid > self.highest:
                    raise ProtocolError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
                if self.streams.pop(sid, None) is not None:
                    handler.on_reset(sid)
            elif kind == GOAWAY:
                if sid:
                    raise ProtocolError(PROTOCOL_ERROR, "GOAWAY on a stream")
                handler.on_goaway()
                return
            elif kind == PUSH_PROMISE:
                raise ProtocolError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            elif kind == PRIORITY and (not sid or length != 5):
                raise ProtocolError(PROTOCOL_ERROR, "a malformed PRIORITY")
            # other frame types (and PRIORITY) are ignored, as RFC 9113 says

    def _keep(self, rest: bytes, need: int) -> None:
        self.pending += rest
        self.need = need

    def _data_start(self, sid: int, length: int, flags: int, pad: int) -> None:
        if not sid:
            raise ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
        if length > self.connection_window - self.received:
            raise ProtocolError(FLOW_CONTROL_ERROR, "DATA beyond the connection's window")
        self.received += length
        if self.received >= self.connection_window >> 1:
            self.out.append(HEAD.pack(4 << 8 | WINDOW_UPDATE, 0, 0) + self.received.to_bytes(4, "big"))
            self.received = 0
        if pad >= 0:
            if pad >= length:
                raise ProtocolError(PROTOCOL_ERROR, "DATA padding as long as the frame")
            self.data_left, self.pad_left = length - 1 - pad, pad
        else:
            self.data_left, self.pad_left = length, 0
        self.data_end = bool(flags & END_STREAM)
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed:
            if sid > self.highest:
                raise ProtocolError(PROTOCOL_ERROR, "DATA on an idle stream")
            if stream is not None:  # DATA after END_STREAM
                self.reset(sid, STREAM_CLOSED)
                self.handler.on_reset(sid)
            self.data_sid = 0  # a stream we closed already: the client had sent it before it knew
            return
        stream.received += length
        if stream.received > self.stream_window:
            self.reset(sid, FLOW_CONTROL_ERROR)
            self.handler.on_reset(sid)
            self.data_sid = 0
            return
        self.data_sid = sid
        if not self.data_end and stream.received >= self.stream_window >> 1:
            self.out.append(HEAD.pack(4 << 8 | WINDOW_UPDATE, 0, sid) + stream.received.to_bytes(4, "big"))
            stream.received = 0

    def _headers(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            raise ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
        start, stop = 0, len(payload)
        if flags & PADDED:
            if not payload:
                raise ProtocolError(PROTOCOL_ERROR, "HEADERS too short for its padding")
            start, stop = 1, stop - payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if start > stop:
            raise ProtocolError(PROTOCOL_ERROR, "HEADERS too short for its padding and priority")
        fragment = payload[start:stop] if start or stop != len(payload) else payload
        if flags & END_HEADERS:
            self._header_block(sid, fragment, bool(flags & END_STREAM))
        else:
            self.block, self.block_sid, self.block_end = [fragment], sid, bool(flags & END_STREAM)

    def _header_block(self, sid: int, block: bytes, end_stream: bool) -> None:
        headers, fields = self.headers.decode(block)  # always: the HPACK state must follow the client's
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client: only as the end of its stream
            if stream.remote_closed or not end_stream:
                raise ProtocolError(PROTOCOL_ERROR, "HEADERS in the middle of a request stream")
            self._remote_end(sid)
            return
        if not sid & 1 or sid <= self.highest:
            raise ProtocolError(PROTOCOL_ERROR, f"HEADERS opening stream {sid} (not a new client stream)")
        self.highest = sid
        if self.limit_on and self.max_streams is not None and len(self.streams) >= self.max_streams:
            self.out.append(HEAD.pack(4 << 8 | RST_STREAM, 0, sid) + REFUSED_STREAM.to_bytes(4, "big"))
            return
        stream = self.streams[sid] = Stream(self.peer_window)
        if end_stream:
            stream.remote_closed = True
        self.handler.on_headers(sid, headers, fields, end_stream)

    def _remote_end(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.remote_closed = True
        if stream.local_closed:
            del self.streams[sid]
        self.handler.on_end(sid)

    def _settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            raise ProtocolError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ProtocolError(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            self.limit_on = True
            return
        if len(payload) % 6:
            raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
        window_changed = False
        for offset in range(0, len(payload), 6):
            key, value = SETTING.unpack_from(payload, offset)
            if key == INITIAL_WINDOW:
                if value > MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1")
                delta, self.peer_window = value - self.peer_window, value
                for stream in self.streams.values():
                    stream.window += delta
                window_changed = True
            elif key == MAX_FRAME_SIZE:
                if not 16384 <= value < 1 << 24:
                    raise ProtocolError(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == ENABLE_PUSH and value > 1:
                raise ProtocolError(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH neither 0 nor 1")
            elif key == HEADER_TABLE_SIZE and value < 4096 and self.table_reset is not None:
                self.table_reset = b"\x20"  # our table to 0 (we never index), said once in our next block
        self.out.append(HEAD.pack(SETTINGS, ACK, 0))
        if window_changed:
            self.handler.on_window(0)

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not sid:
            if not increment:
                raise ProtocolError(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ProtocolError(FLOW_CONTROL_ERROR, "the connection's window over 2^31-1")
            self.handler.on_window(0)
            return
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.highest:
                raise ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        stream.window += increment
        if not increment or stream.window > MAX_WINDOW:
            self.reset(sid, PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR)
            self.handler.on_reset(sid)
            return
        self.handler.on_window(sid)

    # Out

    def window(self, sid: int) -> int:
        """Bytes of DATA stream `sid` may send now (within one frame: see peer_max_frame)."""
        stream = self.streams.get(sid)
        if stream is None:
            return 0
        return min(stream.window, self.send_window)

    def send_headers(self, sid: int, block: bytes, end_stream: bool = False) -> None:
        if self.table_reset:
            block, self.table_reset = self.table_reset + block, None  # type: ignore[assignment]
        flags = END_STREAM if end_stream else 0
        limit = self.peer_max_frame
        if len(block) <= limit:
            self.out.append(HEAD.pack(len(block) << 8 | HEADERS, flags | END_HEADERS, sid) + block)
        else:
            self.out.append(HEAD.pack(limit << 8 | HEADERS, flags, sid) + block[:limit])
            for at in range(limit, len(block), limit):
                piece = block[at:at + limit]
                last = END_HEADERS if at + limit >= len(block) else 0
                self.out.append(HEAD.pack(len(piece) << 8 | CONTINUATION, last, sid) + piece)
        if end_stream:
            self.local_end(sid)

    def send_data(self, sid: int, data: Any) -> None:
        """One DATA frame; the caller keeps it within window(sid) and peer_max_frame."""
        size = len(data)
        self.streams[sid].window -= size
        self.send_window -= size
        self.out.append(HEAD.pack(size << 8 | DATA, 0, sid))
        self.out.append(data)

    def send_raw(self, sid: int, frames: list[Any], data_size: int, end_stream: bool) -> None:
        """Frames the caller built (a unary reply: HEADERS, DATA, trailers), `data_size` bytes of DATA;
        only while `table_reset` is empty (pre-built header blocks cannot carry it)."""
        stream = self.streams[sid]
        stream.window -= data_size
        self.send_window -= data_size
        self.out.extend(frames)
        if end_stream:
            self.local_end(sid)

    def local_end(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            stream.local_closed = True
            if stream.remote_closed:
                del self.streams[sid]

    def reset(self, sid: int, code: int) -> None:
        """RST_STREAM, unless the stream is closed both ways already."""
        if self.streams.pop(sid, None) is not None:
            self.out.append(HEAD.pack(4 << 8 | RST_STREAM, 0, sid) + code.to_bytes(4, "big"))

    def ping(self, data: bytes) -> None:
        self.out.append(HEAD.pack(8 << 8 | PING, 0, 0) + data)

    def goaway(self, last_sid: int, code: int, message: bytes = b"") -> None:
        self.out.append(HEAD.pack((8 + len(message)) << 8 | GOAWAY, 0, 0)
                        + last_sid.to_bytes(4, "big") + code.to_bytes(4, "big") + message)

    def take(self) -> list[Any]:
        out, self.out = self.out, []
        return out
