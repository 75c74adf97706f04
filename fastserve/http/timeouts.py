"""The read, write and keep-alive timeouts of one HTTP connection; a limit of 0 turns one off.

Rules: decides only when a connection has waited too long, from its state and `now` (the loop's
clock); the connection answers 408 or closes through its own methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastserve.http.response import plain_error

if TYPE_CHECKING:
    from fastserve.http.protocol import HttpProtocol


def check_timeouts(protocol: HttpProtocol, now: float) -> None:
    transport = protocol.transport
    if transport is None:
        return
    settings = protocol.state.settings
    if protocol.writing_paused:
        protocol._write_stalled(now, settings.body_timeout)  # a reader taking no bytes is dropped
        return
    if protocol.reading_paused or protocol.linger is not None:
        return  # we stopped reading: the client is not the one late
    if protocol.parsing:
        if not protocol.headers_done:
            if 0 < settings.header_timeout < now - protocol.started_at:
                protocol._fail(plain_error(408, "Timed out waiting for the request headers"))
        elif 0 < settings.body_timeout < now - protocol.last_activity:
            protocol._fail(plain_error(408, "Timed out waiting for the request body"))
    elif protocol.active is None and not protocol.pipeline:
        if 0 < settings.keep_alive_timeout < now - protocol.last_activity:
            transport.close()
