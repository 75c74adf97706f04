"""Content codings: inflating request bodies within a limit, choosing and applying response codings."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from fastserve.errors import BadRequest, PayloadTooLarge
from fastserve.http import compression
from fastserve.http.compression import Codings, Inflater, UnsupportedEncoding, choose, compressed, request_wbits
from fastserve.http.request import Request
from fastserve.http.response import OCTET_STREAM, Response

BODY = b'{"inputs": [' + b'{"name": "x", "data": [1, 2, 3]}, ' * 500 + b"]}"


def inflate(data: bytes, coding: bytes, limit: int = 1 << 20) -> bytes:
    wbits = request_wbits(coding)
    assert wbits is not None
    inflater = Inflater(data, wbits, limit)
    inflater.finish()
    return bytes(inflater.result())


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        (b"gzip", gzip.compress(BODY)),
        (b"x-gzip", gzip.compress(BODY)),
        (b"GZIP", gzip.compress(BODY)),
        (b"deflate", zlib.compress(BODY)),  # zlib container, as RFC 9110 and tritonclient
        (b"deflate", raw_deflate(BODY)),  # bare deflate, as some clients send
        (b"gzip", gzip.compress(BODY[:1000]) + gzip.compress(BODY[1000:])),  # two gzip members
    ],
)
def test_inflate_round_trips(coding: bytes, packed: bytes) -> None:
    assert inflate(packed, coding) == BODY


def test_identity_means_no_inflating_and_others_are_415() -> None:
    assert request_wbits(b"identity") is None
    with pytest.raises(UnsupportedEncoding) as info:
        request_wbits(b"br")
    assert info.value.status == 415 and "br" in info.value.message


def test_bomb_is_refused_without_allocating_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 100_000
    inflater = Inflater(bomb, request_wbits(b"gzip"), 1 << 20)  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge) as info:
        inflater.finish()
    assert info.value.status == 413
    assert len(inflater.out) <= (1 << 20) + 1


def test_exactly_at_the_limit_is_fine() -> None:
    assert inflate(gzip.compress(b"a" * 1000), b"gzip", limit=1000) == b"a" * 1000
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(b"a" * 1001), b"gzip", limit=1000)


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        (b"gzip", gzip.compress(BODY)[:-20]),  # truncated
        (b"gzip", b"not gzip at all"),
        (b"deflate", b"\x78\x9c garbage"),
        (b"gzip", b""),
    ],
)
def test_corrupt_streams_are_400(coding: bytes, packed: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        inflate(packed, coding)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (b"gzip", b"gzip"),
        (b"deflate", b"deflate"),
        (b"gzip, deflate", b"gzip"),
        (b"deflate, gzip", b"gzip"),  # equal weights: gzip preferred
        (b"gzip;q=0.5, deflate", b"deflate"),
        (b"gzip;q=0", None),
        (b"br", None),
        (b"identity", None),
        (b"*", b"gzip"),
        (b"*;q=0, deflate", b"deflate"),
        (b"x-gzip", b"gzip"),
        (b"gzip;q=bogus", None),
        (b"", None),
    ],
)
def test_accept_encoding(accept: bytes, chosen: bytes | None) -> None:
    assert choose(accept) == chosen
    assert choose(accept) == chosen  # cached answer is the same


def test_compressed_response_keeps_status_type_and_headers_and_releases_parts() -> None:
    released = []
    head = b'{"outputs": []}'
    part = memoryview(bytes(range(256)) * 64)
    response = Response(200, head, OCTET_STREAM, parts=[part], headers=((b"inference-header-content-length", b"15"),),
                        on_sent=lambda: released.append(True))
    out = compressed(response, b"gzip")
    assert released == [True]
    assert out.status == 200 and out.content_type == OCTET_STREAM and out.parts is None and out.on_sent is None
    assert (b"inference-header-content-length", b"15") in out.headers
    assert (b"content-encoding", b"gzip") in out.headers and (b"vary", b"accept-encoding") in out.headers
    assert gzip.decompress(out.body) == head + bytes(part)
    assert zlib.decompress(compressed(Response(200, head), b"deflate").body) == head


def request(headers: dict[bytes, bytes], body: bytes = b"") -> Request:
    return Request(b"POST", b"/v2/models/m/infer", headers, body, True, False)


def echo(req: Request, route: object) -> Response:
    return Response(200, bytes(req.body))


def test_codings_apply_inflates_then_compresses_big_enough_responses() -> None:
    codings = Codings(max_inflated=1 << 20, min_size=1024)
    out = codings.apply(echo, request({b"content-encoding": b"gzip", b"accept-encoding": b"gzip"}, gzip.compress(BODY)),
                        None)
    assert isinstance(out, Response)
    assert gzip.decompress(out.body) == BODY
    small = codings.apply(echo, request({b"accept-encoding": b"gzip"}, b"tiny"), None)
    assert isinstance(small, Response) and small.body == b"tiny" and not small.headers
    off = Codings(max_inflated=1 << 20, min_size=0).apply(echo, request({b"accept-encoding": b"gzip"}, BODY), None)
    assert isinstance(off, Response) and off.body == BODY


def test_codings_big_bodies_leave_the_loop_and_async_handlers_are_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "STEP", 4096)  # so a ~20 KiB body takes the worker-thread paths
    big = BODY * 2
    codings = Codings(max_inflated=1 << 20, min_size=1024)

    async def later(req: Request, route: object) -> Response:
        await asyncio.sleep(0)
        return Response(200, bytes(req.body))

    async def main() -> tuple[Response, Response]:
        first = codings.apply(echo, request({b"content-encoding": b"gzip", b"accept-encoding": b"deflate"},
                                            gzip.compress(big)), None)
        second = codings.apply(later, request({b"accept-encoding": b"gzip"}, big), None)
        assert not isinstance(first, Response) and not isinstance(second, Response)
        assert first.cr_code.co_name == "_inflate_later"  # type: ignore[attr-defined]
        return await first, await second  # type: ignore[misc]

    first, second = asyncio.run(main())
    assert zlib.decompress(first.body) == big
    assert gzip.decompress(second.body) == big


def test_codings_bomb_in_worker_thread_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "STEP", 4096)
    codings = Codings(max_inflated=1 << 20, min_size=1024)

    async def main() -> None:
        pending = codings.apply(echo, request({b"content-encoding": b"gzip"}, gzip.compress(b"\0" * (8 << 20))), None)
        await pending  # type: ignore[misc]

    with pytest.raises(PayloadTooLarge):
        asyncio.run(main())
