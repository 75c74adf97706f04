"""Content codings: gzip/deflate request bodies (Content-Encoding) and responses (Accept-Encoding).

Rules: bytes, headers, Request and Response only; knows nothing of KServe. `Codings.apply`
wraps one handler call: the body is inflated before the handler sees it, and the handler's
response is compressed when the client asked and it is big enough. Requests that carry
neither header never come here (App.handle checks two dict keys and calls the handler
directly).

Limits: an inflated body may not exceed `max_inflated` bytes (413 as soon as it would: output
is produced in bounded steps, so a 1 KiB "zip bomb" never allocates more than the limit).
Work above STEP bytes leaves the event loop for a worker thread (zlib releases the GIL), so one
large body does not stall every other connection.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastserve.errors import BadRequest, FastServeError, PayloadTooLarge
from fastserve.http.request import Request
from fastserve.http.response import Response

# Inflate/deflate this much on the loop; beyond it the rest runs in a worker thread. 1 MiB
# takes ~1-3 ms either way here, the most one request should hold the loop for.
STEP = 1 << 20
# zlib level 1: on JSON tensor responses it gets within ~3% of level 6's size at ~2.4x the
# speed (20 KiB of FP32 JSON: 512 us vs 1245 us on the 2-core dev VM).
LEVEL = 1
# wbits: gzip container, zlib container (HTTP's "deflate"), raw deflate (what some clients send).
_GZIP, _ZLIB, _RAW = 31, 15, -15
# Accept-Encoding values seen, parsed once: clients send the same few strings every time.
_ACCEPT_CACHE: dict[bytes, bytes | None] = {}
_ACCEPT_CACHE_MAX = 256
_VARY = (b"vary", b"accept-encoding")

Handler = Callable[[Request, Any], "Response | Awaitable[Response]"]


class UnsupportedEncoding(FastServeError):
    status = 415


class Codings:
    __slots__ = ("max_inflated", "min_size")

    def __init__(self, max_inflated: int, min_size: int) -> None:
        self.max_inflated = max_inflated
        self.min_size = min_size  # responses smaller than this go out as they are; 0: never compress

    def apply(self, handler: Handler, request: Request, route: Any) -> Response | Awaitable[Response]:
        """handler(request, route), with the body inflated first and the response compressed if asked."""
        headers = request.headers
        coding = headers.get(b"content-encoding")
        wanted = choose(headers[b"accept-encoding"]) if self.min_size and b"accept-encoding" in headers else None
        if coding is not None:
            wbits = request_wbits(coding)
            if wbits is not None:
                inflater = Inflater(request.body, wbits, self.max_inflated)
                if not inflater.step():
                    return self._inflate_later(handler, request, route, inflater, wanted)
                request.body = inflater.result()
        result = handler(request, route)
        if wanted is None:
            return result
        if type(result) is Response:
            return self._encode(result, wanted)
        return self._encode_later(result, wanted)  # type: ignore[arg-type]

    async def _inflate_later(
        self, handler: Handler, request: Request, route: Any, inflater: Inflater, wanted: bytes | None
    ) -> Response:
        await asyncio.get_running_loop().run_in_executor(None, inflater.finish)
        request.body = inflater.result()
        result = handler(request, route)
        if type(result) is not Response:
            result = await result  # type: ignore[misc]
        return result if wanted is None else await self._encode_async(result, wanted)  # type: ignore[arg-type]

    async def _encode_later(self, pending: Awaitable[Response], wanted: bytes) -> Response:
        return await self._encode_async(await pending, wanted)

    def _encode(self, response: Response, wanted: bytes) -> Response | Awaitable[Response]:
        length = response.length()
        if length < self.min_size or response.status == 204:
            return response
        if length > STEP:
            return self._encode_async(response, wanted)
        return compressed(response, wanted)

    async def _encode_async(self, response: Response, wanted: bytes) -> Response:
        length = response.length()
        if length < self.min_size or response.status == 204:
            return response
        if length <= STEP:
            return compressed(response, wanted)
        # zlib releases the GIL; on_sent (which may wake a pool waiter) must still run on the loop.
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, compress_body, response, wanted)
        finally:
            if response.on_sent is not None:
                response.on_sent()
        return _with_body(response, body, wanted)


# Requests


def request_wbits(coding: bytes) -> int | None:
    """zlib wbits for a Content-Encoding value; None for identity; 415 for anything else."""
    value = coding.strip().lower()
    if value in (b"gzip", b"x-gzip"):
        return _GZIP
    if value == b"deflate":
        return _ZLIB
    if value in (b"identity", b""):
        return None
    raise UnsupportedEncoding(
        f"Unsupported Content-Encoding {value.decode('latin-1')!r}: send gzip, deflate or identity"
    )


class Inflater:
    """Inflates a whole body in bounded steps; 413 past the limit, 400 for a corrupt stream."""

    __slots__ = ("data", "wbits", "limit", "out", "inflater", "pending")

    def __init__(self, data: bytes | bytearray, wbits: int, limit: int) -> None:
        if wbits == _ZLIB and not _has_zlib_header(data):
            wbits = _RAW  # "deflate" sent without the zlib wrapper, as some clients do
        self.data = data
        self.wbits = wbits
        self.limit = limit
        self.out = bytearray()
        self.inflater: Any = zlib.decompressobj(wbits)
        self.pending: bytes | memoryview = memoryview(data)

    def step(self, budget: int = 0) -> bool:
        """Inflate up to `budget` (default STEP) more bytes; True once the whole body is done."""
        budget = budget or STEP
        try:
            while budget > 0:
                room = self.limit - len(self.out) + 1  # one byte more than allowed tells "too large"
                chunk = self.inflater.decompress(self.pending, min(budget, room))
                self.out += chunk
                budget -= len(chunk)
                if len(self.out) > self.limit:
                    raise PayloadTooLarge(f"Request body too large once decompressed: the limit is {self.limit} bytes")
                self.pending = self.inflater.unconsumed_tail
                if self.inflater.eof:
                    rest = self.inflater.unused_data
                    if not rest:
                        return True
                    # Another gzip member follows (concatenated gzip is one valid stream).
                    self.inflater = zlib.decompressobj(self.wbits)
                    self.pending = rest
                elif not self.pending and not chunk:
                    raise BadRequest("Invalid compressed request body: the stream is truncated")
        except zlib.error as exc:
            raise BadRequest(f"Invalid compressed request body: {exc}") from None
        return False

    def finish(self) -> None:
        """The rest, in a worker thread: bigger steps, as nobody else waits on this thread."""
        while not self.step(16 * STEP):
            pass

    def result(self) -> bytearray:
        return self.out  # a bytearray, like a plain body: binary tensors over it stay writeable


def _has_zlib_header(data: bytes | bytearray) -> bool:
    """RFC 1950: CM=8 (deflate) and the first two bytes, big-endian, a multiple of 31."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


# Responses


def choose(accept: bytes) -> bytes | None:
    """The coding to answer with for an Accept-Encoding value: gzip, deflate or None."""
    found = _ACCEPT_CACHE.get(accept, False)
    if found is not False:
        return found  # type: ignore[return-value]
    chosen = _parse_accept(accept)
    if len(_ACCEPT_CACHE) < _ACCEPT_CACHE_MAX:
        _ACCEPT_CACHE[accept] = chosen
    return chosen


def _parse_accept(accept: bytes) -> bytes | None:
    weights: dict[bytes, float] = {}
    for item in accept.lower().split(b","):
        name, _, params = item.partition(b";")
        name = name.strip()
        weight = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip() == b"q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if name:
            weights[name] = weight
    star = weights.get(b"*", 0.0)
    best, best_weight = None, 0.0
    for coding in (b"gzip", b"deflate"):  # gzip first: preferred when weights tie
        weight = weights.get(coding, weights.get(b"x-gzip", star) if coding == b"gzip" else star)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best


def compressed(response: Response, coding: bytes) -> Response:
    """The same response with a compressed body; runs the original on_sent (its buffers are copied)."""
    try:
        body = compress_body(response, coding)
    finally:
        if response.on_sent is not None:
            response.on_sent()  # tensor memory is no longer referenced once compressed
    return _with_body(response, body, coding)


def compress_body(response: Response, coding: bytes) -> bytes:
    """Body and parts through one compressor, part by part (no join of the uncompressed tensors)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP if coding == b"gzip" else _ZLIB)
    chunks = [compressor.compress(response.body)]
    for part in response.parts or ():
        chunks.append(compressor.compress(part))
    chunks.append(compressor.flush())
    return b"".join(chunks)


def _with_body(response: Response, body: bytes, coding: bytes) -> Response:
    return Response(
        response.status,
        body,
        response.content_type,
        headers=(*response.headers, (b"content-encoding", coding), _VARY),
    )
