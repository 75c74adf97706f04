"""Binary outputs: zero copy (memoryviews of the output tensor) vs one copy, measured.

Run from the repository root: `python bench/output_copy.py` (about 15 s, 127.0.0.1 only).
For each output size it times, in one process:
- copy: the cost of the one copy itself (`bytes(memoryview)`), the alternative to zero copy;
- send: from `transport.writelines([head, part])` on a uvloop TCP connection until a client
  thread has received every byte, with `part` the view itself or a fresh copy of it.
It prints a table; the figures are recorded in fastserve/v2/encode.py's module comment.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import threading
import time

import numpy as np
import uvloop

SIZES = ((4 << 10, 400), (588 << 10, 200), (16 << 20, 20), (128 << 20, 4))  # (bytes, repetitions)


def copy_cost(array: np.ndarray, repetitions: int) -> float:
    view = memoryview(array).cast("B")
    times = []
    for _ in range(repetitions):
        began = time.perf_counter()
        bytes(view)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


class Sender(asyncio.Protocol):
    def __init__(self, ready: asyncio.Future[asyncio.Transport]) -> None:
        self.ready = ready

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) or hasattr(transport, "writelines")
        transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        self.ready.set_result(transport)  # type: ignore[arg-type]


async def send_times(array: np.ndarray, repetitions: int, copy: bool) -> float:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[asyncio.Transport] = loop.create_future()
    server = await loop.create_server(lambda: Sender(ready), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    transport = await ready
    head = b"x" * 200
    total = len(head) + array.nbytes
    arrived: list[asyncio.Future[None]] = [loop.create_future() for _ in range(repetitions)]

    def reader() -> None:
        buffer = bytearray(1 << 20)
        for future in arrived:
            left = total
            while left:
                left -= client.recv_into(buffer, min(left, len(buffer)))
            loop.call_soon_threadsafe(future.set_result, None)

    thread = threading.Thread(target=reader)
    thread.start()
    times = []
    view = memoryview(array).cast("B")
    for future in arrived:
        began = time.perf_counter()
        part = bytes(view) if copy else view
        transport.writelines([head, part])
        await future  # the loop flushes what the socket did not take at once meanwhile
        times.append(time.perf_counter() - began)
    thread.join()
    client.close()
    transport.close()
    server.close()
    return statistics.median(times)


async def main() -> None:
    print(f"{'output':>10} {'copy itself':>12} {'send, zero copy':>16} {'send, one copy':>15} {'copy share':>11}")
    for size, repetitions in SIZES:
        array = np.random.default_rng(0).random(size // 4, dtype=np.float32)
        cost = copy_cost(array, repetitions)
        zero = await send_times(array, repetitions, copy=False)
        copied = await send_times(array, repetitions, copy=True)
        label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
        print(f"{label:>10} {cost * 1e3:10.3f}ms {zero * 1e3:14.3f}ms {copied * 1e3:13.3f}ms "
              f"{(copied - zero) / copied:10.0%}", flush=True)


if __name__ == "__main__":
    if sys.platform != "linux":
        raise SystemExit("Linux only")
    uvloop.run(main())
