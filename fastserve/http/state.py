"""Server-wide state shared by every connection: settings, open connections, running tasks."""

from __future__ import annotations

import asyncio
from typing import Protocol

from fastserve.settings import ServerSettings


class Connection(Protocol):
    """What shutdown needs of an open connection (http/protocol.py's HttpProtocol is one)."""

    def unfinished(self) -> int:
        """Requests running, queued behind one (pipelined) or still arriving: each will be answered."""
        ...

    def shutdown(self) -> None:
        """Close once idle; answer what was accepted first."""
        ...

    def abort(self) -> None:
        """Close now (the drain timed out)."""
        ...


class ServerState:
    def __init__(self, settings: ServerSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self.access_log = settings.log_level in ("DEBUG", "TRACE")
