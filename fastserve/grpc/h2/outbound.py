"""Responses on one HTTP/2 stream: headers, messages under the peer's flow-control window, trailers.

Nothing here writes to the socket: h2 collects the frames and the connection writes them once
per flush. A message that fits the window and one frame goes out at once; a bigger one waits
in the call's outbox as views of the response bytes and leaves as the window opens (resumed
on WINDOW_UPDATE / SETTINGS by the connection).
"""

from __future__ import annotations

from typing import Any

import grpc
from h2.connection import H2Connection

from fastserve.grpc.h2.call import Call
from fastserve.grpc.h2.framing import percent_encode, prefix

RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                    (b"grpc-accept-encoding", b"identity,gzip")]
OK_TRAILERS = [(b"grpc-status", b"0")]
_CODES = {code: str(code.value[0]).encode() for code in grpc.StatusCode}


def status_trailers(code: grpc.StatusCode, details: str) -> list[tuple[bytes, bytes]]:
    trailers = [(b"grpc-status", _CODES[code])]
    if details:
        trailers.append((b"grpc-message", percent_encode(details)))
    return trailers


def send_message(conn: H2Connection, call: Call, data: Any) -> None:
    sid = call.stream_id
    if not call.headers_sent:
        conn.send_headers(sid, RESPONSE_HEADERS)
        call.headers_sent = True
    size = len(data) + 5
    if not call.outbox and size <= conn.max_outbound_frame_size and size <= conn.local_flow_control_window(sid):
        conn.send_data(sid, prefix(len(data)) + data)  # small: one frame (this concatenation is cheap)
        return
    call.outbox.append(prefix(len(data)))
    call.outbox.append(memoryview(data))


def pump(conn: H2Connection, call: Call) -> bool:
    """Send what the window allows; True once everything, trailers too, is sent."""
    outbox, sid = call.outbox, call.stream_id
    while outbox:
        window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if window <= 0:
            return False
        piece = outbox[0]
        if len(piece) <= window:
            conn.send_data(sid, piece)
            outbox.popleft()
        else:
            conn.send_data(sid, piece[:window])
            outbox[0] = piece[window:]
    if call.drained is not None and not call.drained.done():
        call.drained.set_result(None)
    if call.trailers is None:
        return False
    if call.headers_sent:
        conn.send_headers(sid, call.trailers, end_stream=True)
    else:  # trailers-only: the status travels in the one HEADERS frame
        conn.send_headers(sid, RESPONSE_HEADERS + call.trailers, end_stream=True)
        call.headers_sent = True
    return True
