"""Responses on one HTTP/2 stream: headers, messages under the peer's flow-control window, trailers.

Nothing here writes to the socket: the engine (grpc/h2/engine.py) collects the frames and the
connection writes them once per flush. A unary reply that fits the window and one frame is
built as one `bytes` (HEADERS, DATA with the message's prefix, trailers: `unary_frames`); any
other message waits in the call's outbox as views of the response bytes and leaves frame by
frame as the window opens (resumed on WINDOW_UPDATE / SETTINGS by the connection).
"""

from __future__ import annotations

import struct
from typing import Any

import grpc

from fastserve.grpc.h2.call import Call
from fastserve.grpc.h2.engine import DATA, END_HEADERS, END_STREAM, HEADERS, Engine
from fastserve.grpc.h2.framing import percent_encode, prefix
from fastserve.grpc.h2.hpackout import CODES, OK, RESPONSE, block, literal

# HEADERS (the response's), then a DATA frame's head and the message's prefix; then trailers.
_OPEN = struct.Struct(f">IBI{len(RESPONSE)}sIBIBI")
_CLOSE = struct.Struct(f">IBI{len(OK)}s")
_HEADERS_LENGTH = len(RESPONSE) << 8 | HEADERS
_TRAILERS_LENGTH = len(OK) << 8 | HEADERS


def unary_frames(sid: int, data: Any) -> list[Any]:
    """A whole OK reply to a unary call: the response headers, one DATA frame, the trailers."""
    size = len(data)
    return [_OPEN.pack(_HEADERS_LENGTH, END_HEADERS, sid, RESPONSE, (size + 5) << 8 | DATA, 0, sid, 0, size), data,
            _CLOSE.pack(_TRAILERS_LENGTH, END_HEADERS | END_STREAM, sid, OK)]


def status_trailers(code: grpc.StatusCode, details: str) -> bytes:
    block = literal(b"grpc-status", CODES[code])
    if details:
        block += literal(b"grpc-message", percent_encode(details))
    return block


def send_message(engine: Engine, call: Call, data: Any) -> None:
    sid = call.stream_id
    if not call.headers_sent:
        engine.send_headers(sid, RESPONSE)
        call.headers_sent = True
    size = len(data) + 5
    if not call.outbox and size <= engine.peer_max_frame and size <= engine.window(sid):
        engine.send_data(sid, prefix(len(data)) + data)  # small: one frame (this concatenation is cheap)
        return
    call.outbox.append(prefix(len(data)))
    call.outbox.append(memoryview(data))


def pump(engine: Engine, call: Call) -> bool:
    """Send what the window allows; True once everything, trailers too, is sent."""
    outbox, sid = call.outbox, call.stream_id
    while outbox:
        window = min(engine.window(sid), engine.peer_max_frame)
        if window <= 0:
            return False
        piece = outbox[0]
        if len(piece) <= window:
            engine.send_data(sid, piece)
            outbox.popleft()
        else:
            engine.send_data(sid, piece[:window])
            outbox[0] = piece[window:]
    if call.drained is not None and not call.drained.done():
        call.drained.set_result(None)
    if call.trailers is None:
        return False
    if call.headers_sent:
        engine.send_headers(sid, call.trailers, end_stream=True)
    else:  # trailers-only: the status travels in the one HEADERS frame
        engine.send_headers(sid, RESPONSE + call.trailers, end_stream=True)
        call.headers_sent = True
    return True


def http_error(status: bytes, message: str) -> bytes:
    """A non-gRPC request's answer (405, 415), with grpc-status INTERNAL for gRPC clients."""
    return block([(b":status", status), (b"content-type", b"text/plain"), (b"grpc-status", b"13"),
                  (b"grpc-message", percent_encode(message))])
