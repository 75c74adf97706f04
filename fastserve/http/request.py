"""The parsed request handed to the application: raw URL, lower-cased headers, the whole body."""

from __future__ import annotations


class Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "http10")

    def __init__(
        self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes | bytearray, keep_alive: bool,
        http10: bool,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http10 = http10
