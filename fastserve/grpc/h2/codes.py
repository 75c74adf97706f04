"""HTTP/2's error codes (RFC 9113 section 7) and the error a peer that breaks the protocol gets."""

from __future__ import annotations

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 5, 6, 7, 8, 9


class ProtocolError(Exception):
    """A connection error: the connection answers GOAWAY with `code` and closes."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
