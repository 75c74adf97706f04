"""gRPC over HTTP/2, the byte level: the length-prefixed messages, grpc-timeout, grpc-message.

A message is 1 byte (compressed or not), 4 bytes big-endian length, then the message. The
reader checks each prefix before a byte of its message is kept (`admit` refuses a message over
the receive limit or the memory quota at once), and hands a message that sits whole in one
DATA frame on as a view of it (no copy); only a message spread over frames is gathered, into
one buffer of the announced size.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

import grpc

from fastserve.grpc.rpc import Aborted

PREFIX = struct.Struct(">BI")
_TIMEOUT = re.compile(rb"^(\d{1,8})([HMSmun])$")
_UNIT_SECONDS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_PLAIN = re.compile(rb"^[\x20-\x24\x26-\x7e]*$")  # printable ASCII but '%': sent as it is


def prefix(length: int) -> bytes:
    return PREFIX.pack(0, length)


def parse_timeout(value: bytes) -> float:
    """grpc-timeout ("30S", "100m", ...) in seconds; ValueError when it is not one."""
    found = _TIMEOUT.match(value)
    if found is None:
        raise ValueError(f"invalid grpc-timeout {value!r}")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def percent_encode(text: str) -> bytes:
    """grpc-message as the gRPC spec wants it: UTF-8, then every byte outside printable ASCII
    (and '%') as %XX."""
    raw = text.encode("utf-8", "replace")
    if _PLAIN.match(raw):
        return raw
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)


def too_large(size: int, limit: int, sent: bool = False) -> Aborted:
    # grpcio's wording, so that clients and tests see the same text on both transports.
    return Aborted(grpc.StatusCode.RESOURCE_EXHAUSTED,
                   f"{'Sent' if sent else 'Received'} message larger than max ({size} vs. {limit})")


def gunzip(body: Any, limit: int) -> bytes:
    """A gzip-compressed message, inflated to at most `limit` bytes (a "zip bomb" stops there)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Aborted(grpc.StatusCode.INTERNAL, f"the gzip-compressed message could not be inflated: {exc}") from None
    if len(out) > limit:
        raise too_large(len(out) + len(inflater.unconsumed_tail), limit)
    return out


class MessageReader:
    """One stream's DATA as complete messages: (compressed flag, message bytes or view)."""

    __slots__ = ("admit", "head", "body", "filled", "flag")

    def __init__(self, admit: Callable[[int], None]) -> None:
        self.admit = admit  # called with each announced length; raises Aborted to refuse it
        self.head = b""  # a prefix split over frames
        self.body: bytearray | None = None  # a message split over frames
        self.filled = 0
        self.flag = 0

    @property
    def partial(self) -> bool:
        return bool(self.head) or self.body is not None

    def feed(self, data: bytes) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            body = self.body
            if body is None:
                if self.head or end - pos < 5:
                    take = min(5 - len(self.head), end - pos)
                    self.head += data[pos:pos + take]
                    pos += take
                    if len(self.head) < 5:
                        break
                    flag, length = PREFIX.unpack(self.head)
                    self.head = b""
                else:
                    flag, length = PREFIX.unpack_from(data, pos)
                    pos += 5
                self.admit(length)
                if end - pos >= length:  # the whole message is in this frame: a view of it
                    out.append((flag, view[pos:pos + length]))
                    pos += length
                    continue
                self.body = body = bytearray(length)
                self.filled = 0
                self.flag = flag
            take = min(len(body) - self.filled, end - pos)
            body[self.filled:self.filled + take] = view[pos:pos + take]
            self.filled += take
            pos += take
            if self.filled == len(body):
                out.append((self.flag, body))
                self.body = None
        return out
