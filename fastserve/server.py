"""Runs the server: uvloop, the listening sockets, model loading, signals, graceful shutdown.

Rules: wires the pieces together and owns their lifetime; parses no HTTP and touches no
tensors. The socket listens before models are compiled, so /v2/health/live answers at once
and /v2/health/ready turns 200 when every configured model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from fastserve.errors import ConfigError
from fastserve.handlers import App
from fastserve.http.protocol import HttpProtocol
from fastserve.http.state import ServerState
from fastserve.models.repository import Repository
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve")
SWEEP_INTERVAL = 1.0  # seconds between timeout checks of all connections


def run(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT; the process exit code."""
    repository = Repository(settings.models, settings.cache_dir)
    plan = repository.plan()  # ConfigErrors surface here, before anything listens
    return uvloop.run(_serve(settings, repository, plan))


async def _serve(settings: ServerSettings, repository: Repository, plan: dict) -> int:
    loop = asyncio.get_running_loop()
    state = ServerState(settings, loop)
    app = App(settings, repository)
    hosts = [h.strip() for h in settings.rest_bind_address.split(",") if h.strip()]
    try:
        server = await loop.create_server(
            lambda: HttpProtocol(app, state), hosts, settings.rest_port, backlog=2048, reuse_address=True
        )
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.rest_bind_address, settings.rest_port, exc.strerror)
        return 1
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        log.info("listening on http://%s:%d", host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = loop.create_task(_sweep(state))
    loader = loop.run_in_executor(None, repository.load_all, plan)
    exit_code = 0
    stopping = loop.create_task(stop.wait())
    done, _ = await asyncio.wait([loader, stopping], return_when=asyncio.FIRST_COMPLETED)
    if loader in done:
        error = loader.exception()
        if error is not None:
            log.error("%s", error if isinstance(error, ConfigError) else f"model loading failed: {error!r}")
            stop.set()
            exit_code = 1
        else:
            log.info("server ready: %d model(s) loaded", len(repository.models))
    await stopping
    log.info("shutting down: finishing %d request(s)", sum(1 for c in state.connections if c.active) + len(state.tasks))
    await _drain(state, server, settings.shutdown_timeout)
    sweeper.cancel()
    if not loader.done():
        log.info("waiting for model loading to stop")
    return exit_code


async def _drain(state: ServerState, server: asyncio.AbstractServer, timeout: float) -> None:
    """Stop accepting, let in-flight requests finish (bounded), close the rest."""
    state.shutting_down = True
    server.close()
    for connection in list(state.connections):
        connection.shutdown()
    deadline = state.loop.time() + timeout
    while (state.connections or state.tasks) and state.loop.time() < deadline:
        await asyncio.sleep(0.05)
        for connection in list(state.connections):
            connection.shutdown()
    for connection in list(state.connections):
        if connection.transport is not None:
            connection.transport.abort()


async def _sweep(state: ServerState) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        now = state.loop.time()
        for connection in list(state.connections):
            connection.check_timeouts(now)


def configure_logging(level: str, path: str | None) -> None:
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s][%(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"TRACE": "DEBUG"}.get(level, level))
