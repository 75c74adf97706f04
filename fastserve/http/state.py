"""Server-wide state shared by every connection: settings, open connections, running tasks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastserve.settings import ServerSettings

if TYPE_CHECKING:
    from fastserve.http.protocol import HttpProtocol


class ServerState:
    def __init__(self, settings: ServerSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self.access_log = settings.log_level in ("DEBUG", "TRACE")
