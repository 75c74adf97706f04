"""The h2 transport's server: listens on every --grpc_bind_address, stops with GOAWAY and a grace.

Same interface as grpc/server.py's GrpcServer (start, stop), so fastserve/server.py runs
either. SO_REUSEPORT only for worker processes sharing the port (`reuse_port`), as there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastserve.core.inference import InferenceCore
from fastserve.grpc import access
from fastserve.grpc.h2.options import Limits, limits
from fastserve.grpc.h2.protocol import GrpcConnection
from fastserve.grpc.methods import MethodTable, method_table
from fastserve.grpc.service import MemoryQuota
from fastserve.metrics import Metrics
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.grpc")
DRAIN_POLL = 0.05  # seconds between checks that in-flight calls are done


@dataclass
class Shared:
    """What every connection of one server uses."""

    loop: asyncio.AbstractEventLoop
    table: MethodTable
    limits: Limits
    quota: MemoryQuota
    access_log: bool = False
    connections: set[GrpcConnection] = field(default_factory=set)


class H2GrpcServer:
    def __init__(self, settings: ServerSettings, core: InferenceCore, reuse_port: bool,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        quota = MemoryQuota(settings.grpc_memory_quota)
        # Headers stay bytes; of the client's only :method, :path, content-type and the grpc-* ones
        # are read, each checked where it is used (a missing one is a gRPC error, not a crash).
        self.shared = Shared(asyncio.get_running_loop(), method_table(core, quota, metrics),
                             limits(settings, reuse_port), quota, access.enabled(settings))
        self.servers: list[asyncio.AbstractServer] = []
        self.keepalive: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Bind and start; False (logged) when an address cannot be bound."""
        shared, port = self.shared, self.settings.grpc_port
        for host in [h.strip() for h in self.settings.grpc_bind_address.split(",") if h.strip()]:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                server = await shared.loop.create_server(lambda: GrpcConnection(shared), host, port, backlog=2048,
                                                         reuse_address=True,
                                                         reuse_port=shared.limits.reuse_port or None)
            except OSError as exc:
                log.error("cannot start the gRPC server at %s - %s", address, exc.strerror or exc)
                self.close_listeners()
                return False
            self.servers.append(server)
            log.info("listening on grpc://%s", address)
        self.keepalive = shared.loop.create_task(self._keepalive())
        return True

    def close_listeners(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()

    async def stop(self, grace: float) -> None:
        """No new connections; GOAWAY on each; in-flight calls get `grace` seconds, then are cut."""
        self.close_listeners()
        if self.keepalive is not None:
            self.keepalive.cancel()
        connections = self.shared.connections
        for connection in list(connections):
            connection.send_goaway()
        deadline = self.shared.loop.time() + grace
        while connections and self.shared.loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        for connection in list(connections):
            connection.abort()

    async def _keepalive(self) -> None:
        limits, loop = self.shared.limits, self.shared.loop
        period = min(limits.keepalive_time, limits.keepalive_timeout)
        last_ping = loop.time()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            due = now - last_ping >= limits.keepalive_time
            if due:
                last_ping = now
            for connection in list(self.shared.connections):
                if due or connection.ping_sent is not None:
                    connection.keepalive(now)
