"""The server's header blocks in HPACK, built without the dynamic table.

Only static-table references and literals *without indexing* (RFC 7541 6.1, 6.2.2): such a
block changes no table, so the same bytes mean the same headers on every connection and at
any time, and the blocks used on every call (200 response headers, OK trailers) are built
once at import. Strings are sent as they are (no Huffman coding).
"""

from __future__ import annotations

import grpc

STATUS_200 = b"\x88"  # static index 8, :status 200
STATUS_NAME = 8
CONTENT_TYPE_NAME = 31


def integer(value: int, bits: int, first: int = 0) -> bytes:
    """HPACK's integer with a `bits`-bit prefix, its high bits `first`."""
    limit = (1 << bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(value: bytes) -> bytes:
    return integer(len(value), 7) + value


def literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, its name a literal too."""
    return b"\x00" + string(name) + string(value)


def literal_named(index: int, value: bytes) -> bytes:
    """A literal header field without indexing, its name from the static table."""
    return integer(index, 4) + string(value)


def status_block(code: bytes) -> bytes:
    return STATUS_200 if code == b"200" else literal_named(STATUS_NAME, code)


def block(headers: list[tuple[bytes, bytes]]) -> bytes:
    out = []
    for name, value in headers:
        if name == b":status":
            out.append(status_block(value))
        elif name == b"content-type":
            out.append(literal_named(CONTENT_TYPE_NAME, value))
        else:
            out.append(literal(name, value))
    return b"".join(out)


RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                    (b"grpc-accept-encoding", b"identity,gzip")]
RESPONSE = block(RESPONSE_HEADERS)
OK = block([(b"grpc-status", b"0")])
CODES = {code: str(code.value[0]).encode() for code in grpc.StatusCode}
