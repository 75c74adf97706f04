"""A large ModelInferRequest's raw_input_contents as views of the received message, not copies.

protobuf's parse copies every raw_input_contents entry twice (into its arena, then into a
`bytes` when read), and a `bytes` is read-only, so binding copies it a third time into the
infer request's tensor. A message gathered from several reads (grpc/h2/framing.py) is a
writable buffer of its own: its top-level fields are walked here (a few tags, no payload
touched), the raw entries become memoryviews of it, and protobuf parses only the rest (names,
shapes, parameters: a few hundred bytes). The arrays over those views are writable, so OpenVINO
shares them (models/servable.py): after the gather, the tensor is not copied again.

Anything unusual in the wire format (a truncated field, an unknown wire type) returns None:
the caller then parses the whole message as before and gets protobuf's own error, so the
answers are the same either way.
"""

from __future__ import annotations

from typing import Any

RAW_INPUT_CONTENTS = 7  # ModelInferRequest's field number
SPLIT_FROM = 64 * 1024  # smaller messages: protobuf's copies cost less than the walk


def split_raw(body: Any) -> tuple[bytes, list[memoryview]] | None:
    """(the message without its raw_input_contents, those entries as views of `body`), or None."""
    if type(body) is not bytearray or len(body) < SPLIT_FROM:
        return None
    view = memoryview(body)
    end = len(view)
    pos = kept_from = 0
    kept: list[memoryview] = []
    raws: list[memoryview] = []
    while pos < end:
        start = pos
        tag, pos = _varint(view, pos, end)
        if pos < 0:
            return None
        wire = tag & 7
        if wire == 2:
            length, pos = _varint(view, pos, end)
            stop = pos + length
            if pos < 0 or stop > end:
                return None
            if tag >> 3 == RAW_INPUT_CONTENTS:
                kept.append(view[kept_from:start])
                raws.append(view[pos:stop])
                kept_from = stop
            pos = stop
        elif wire == 0:
            _, pos = _varint(view, pos, end)
            if pos < 0:
                return None
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            return None
        if pos > end:
            return None
    if not raws:
        return None
    kept.append(view[kept_from:end])
    return b"".join(kept), raws


def _varint(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    """A base-128 varint at `pos`: (value, the position after it); (0, -1) when it is cut short."""
    value = shift = 0
    while pos < end and shift < 64:
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return 0, -1
