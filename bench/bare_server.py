"""The ceiling for GET /v2/health/live: uvloop + httptools answering every request with a fixed 200.

Rules: no routing, no request objects, no timers, no flow control: the least a Python server
on the same stack can do per request. fastserve's health endpoint is measured against it.
Usage: python bench/bare_server.py [--port 0]; prints "listening on http://127.0.0.1:<port>".
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import httptools
import uvloop

# The same head fastserve sends for a live check (status line, type, length): only the work differs.
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"


class BareProtocol(asyncio.Protocol):
    __slots__ = ("transport", "parser")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(RESPONSE)
            if not self.parser.should_keep_alive():
                self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BareProtocol, "127.0.0.1", port, backlog=2048, reuse_address=True)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
