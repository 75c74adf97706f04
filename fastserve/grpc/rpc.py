"""The transport-neutral shape of an RPC: what both gRPC transports (grpcio's, grpc/h2's) share.

Rules: imports no grpcio server machinery and no transport. A `Method` is one entry of the
method table (grpc/methods.py): its kind, its handler `(request, context)`, how its request
bytes become a message and how its response becomes bytes. Handlers end a call with an error
through `await context.abort(code, details)`; grpcio's context raises its AbortError, the h2
transport's raises `Aborted`, and `ABORTS` names both so shared code lets either pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

UNARY = "unary_unary"
SERVER_STREAM = "unary_stream"
BIDI = "stream_stream"


class Aborted(Exception):
    """A call ended with a non-OK status (the h2 transport turns it into trailers)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


ABORTS: tuple[type[BaseException], ...] = (grpc.aio.AbortError, Aborted)


@dataclass(frozen=True, slots=True)
class Method:
    kind: str  # UNARY, SERVER_STREAM or BIDI
    handler: Callable[..., Any]  # UNARY: async (request, context) -> response; streams: async generators
    parse: Callable[[bytes], Any] | None = None  # None: the handler takes the request's bytes
    serialize: Callable[[Any], bytes] | None = None  # None: the handler returns bytes


def parser(message_type: Any) -> Callable[[bytes], Any]:
    """Bytes -> message; undecodable bytes are INTERNAL, as gRPC's C++ server (OVMS) answers
    (grpcio's own deserializer would say UNKNOWN)."""

    def parse(body: bytes) -> Any:
        try:
            return message_type.FromString(body)
        except DecodeError as exc:
            raise Aborted(grpc.StatusCode.INTERNAL,
                          f"the request is not a valid {message_type.DESCRIPTOR.name}: {exc}") from None

    return parse


def serialize(message: Any) -> bytes:
    return message.SerializeToString()
