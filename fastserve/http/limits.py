"""The limits every HTTP connection enforces, and small helpers of the connection's error paths."""

from __future__ import annotations

import asyncio

# Request line: nginx and Apache refuse lines over 8 KiB; v2 URLs are under 200 bytes.
MAX_URL_BYTES = 8 * 1024
# Header block: Triton/nginx allow 8-16 KiB per line; 64 KiB in total is generous for KServe clients.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
# Requests parsed ahead of the one being answered, and their body bytes; beyond either we stop
# reading (the kernel buffers then push back on the client). 16 x 4 MiB bounds a pipelining client.
MAX_PIPELINE = 16
MAX_PIPELINE_BYTES = 4 * 1024 * 1024
RETRY_AFTER = ((b"retry-after", b"1"),)


class StopParsing(Exception):
    """Raised from a parser callback to stop feeding: the response is already decided."""


def reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def peer(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
