"""The h2 transport's byte-level pieces: message framing, grpc-timeout, grpc-message, gzip, and
running a handler inline until it has to wait (then as a task that can be cancelled)."""

from __future__ import annotations

import asyncio
import gzip

import grpc
import pytest

from fastserve.grpc.h2 import inline
from fastserve.grpc.h2.framing import MessageReader, gunzip, parse_timeout, percent_encode, prefix
from fastserve.grpc.rpc import Aborted


def frame(message: bytes, flag: int = 0) -> bytes:
    return bytes([flag]) + len(message).to_bytes(4, "big") + message


def test_messages_whole_in_one_frame_are_views_and_split_ones_are_gathered() -> None:
    announced: list[int] = []
    reader = MessageReader(announced.append)
    data = frame(b"one") + frame(b"") + frame(b"three", flag=1)
    got = reader.feed(data)
    assert [(flag, bytes(m)) for flag, m in got] == [(0, b"one"), (0, b""), (1, b"three")]
    assert isinstance(got[0][1], memoryview) and announced == [3, 0, 5]
    stream = frame(b"x" * 1000) + frame(b"tail")
    pieces = [stream[i:i + 7] for i in range(0, len(stream), 7)]  # prefixes and bodies split anywhere
    out = [m for piece in pieces for _, m in reader.feed(piece)]
    assert [bytes(m) for m in out] == [b"x" * 1000, b"tail"] and not reader.partial
    assert reader.feed(frame(b"abc")[:3]) == [] and reader.partial


def test_a_refused_prefix_stops_before_its_body() -> None:
    def admit(length: int) -> None:
        if length > 10:
            raise Aborted(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big")

    reader = MessageReader(admit)
    with pytest.raises(Aborted):
        reader.feed(prefix(11))  # the prefix alone is enough to refuse
    assert reader.body is None


@pytest.mark.parametrize("text, seconds", [(b"30S", 30.0), (b"100m", 0.1), (b"5u", 5e-6), (b"2H", 7200.0),
                                           (b"1M", 60.0), (b"99999999n", 0.099999999)])
def test_grpc_timeout_units(text: bytes, seconds: float) -> None:
    assert parse_timeout(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [b"", b"10", b"123456789S", b"1s", b"-1S", b"1.5S"])
def test_a_bad_grpc_timeout_is_refused(text: bytes) -> None:
    with pytest.raises(ValueError):
        parse_timeout(text)


def test_grpc_message_is_percent_encoded() -> None:
    assert percent_encode("plain text: ok") == b"plain text: ok"
    assert percent_encode("100% żółw\n") == b"100%25 %C5%BC%C3%B3%C5%82w%0A"


def test_gzip_is_inflated_up_to_the_limit() -> None:
    packed = gzip.compress(b"a" * 1000)
    assert gunzip(memoryview(packed), 1000) == b"a" * 1000
    with pytest.raises(Aborted) as caught:
        gunzip(packed, 999)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(Aborted) as caught:
        gunzip(b"not gzip", 1000)
    assert caught.value.code == grpc.StatusCode.INTERNAL


def test_a_handler_that_needs_no_wait_finishes_inline_without_a_task() -> None:
    async def handler() -> str:
        return "done"

    assert inline.step(handler()) == (True, "done")


def test_a_handler_that_waits_continues_in_a_task_and_can_be_cancelled() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[int] = loop.create_future()
        log: list[str] = []

        async def handler() -> int:
            log.append("before")
            value = await gate
            log.append("after")
            return value + 1

        coro = handler()
        done, waiting = inline.step(coro)
        assert not done and waiting is gate and log == ["before"]
        task = loop.create_task(inline.resume(coro, waiting))
        await asyncio.sleep(0)
        gate.set_result(41)
        assert await task == 42 and log == ["before", "after"]

        blocked: asyncio.Future[int] = loop.create_future()

        async def stuck() -> None:
            try:
                await blocked
            finally:
                log.append("cancelled")

        coro2 = stuck()
        _, waiting = inline.step(coro2)
        task = loop.create_task(inline.resume(coro2, waiting))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert blocked.cancelled() and log[-1] == "cancelled"  # the wait itself was cancelled

    asyncio.run(run())
