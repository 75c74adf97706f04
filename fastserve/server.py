"""Runs the server: uvloop, the listening sockets, model loading, signals, graceful shutdown.

Rules: wires the pieces together and owns their lifetime; parses no HTTP and touches no
tensors. The lifecycle, in order:
1. plan: version folders and policies are checked before anything listens (ConfigError -> exit 2);
2. listen: /v2/health/live answers at once, /v2/health/ready is 503;
3. load: models compile in a daemon thread; ready turns 200 when every configured model is
   loaded; a model that fails stops the server (exit 2, the log line names the model);
4. serve, and every --file_system_poll_wait_seconds apply version folder and config.json
   changes (reload.py; also on POST /v1/config/reload);
5. SIGTERM/SIGINT: stop accepting, let in-flight requests finish (at most shutdown_timeout
   seconds; a second signal cuts it short), close the rest, exit 0.
As one of --rest_workers processes (workers.py, a WorkerRole), the socket is bound with
SO_REUSEPORT and the parent hears through `on_ready` once the models are loaded; a replacement
worker listens only then, so the port never hands a client to a worker that is still loading.
A compile cannot be interrupted, so shutdown never waits for the loading thread; and an
inference whose client was cut off gets SETTLE_TIMEOUT to end. Whatever OpenVINO still runs
after that, the process leaves with os._exit: an interpreter shutting down under OpenVINO's
threads aborts ("FATAL: exception not rethrown") when one calls back into Python.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from fastserve.core import admission
from fastserve.errors import ConfigError
from fastserve.handlers import App
from fastserve.http.protocol import HttpProtocol
from fastserve.http.state import ServerState
from fastserve.models import pool
from fastserve.models.repository import Repository
from fastserve.pipelines import custom
from fastserve.reload import Reloader
from fastserve.settings import ServerSettings

if TYPE_CHECKING:
    from fastserve.grpc.h2.server import H2GrpcServer
    from fastserve.grpc.server import GrpcServer

log = logging.getLogger("fastserve")
SWEEP_INTERVAL = 1.0  # seconds between timeout checks of all connections
DRAIN_POLL = 0.05  # seconds between checks that in-flight requests are done
# Seconds an inference cut off by the drain deadline gets to end before we stop waiting for it.
SETTLE_TIMEOUT = 5.0
LOAD_FAILED_EXIT = 2  # a model that cannot load is a configuration problem, as a bad config.json


@dataclass(frozen=True)
class WorkerRole:
    """What changes for one of --rest_workers processes (see workers.py)."""

    on_ready: Callable[[], None]  # tells the parent the models are loaded
    listen_after_load: bool = False  # a replacement: its siblings serve while it loads


def run(settings: ServerSettings, worker: WorkerRole | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the process exit code. ConfigErrors before listening propagate."""
    pool.configure(settings.max_queue_size, settings.request_timeout_seconds)  # before any servable exists
    admission.configure(settings.max_queue_size)  # the loop's queue of inline requests, per worker
    repository = Repository(settings.models, settings.cache_dir)
    plan = repository.plan()  # ConfigErrors surface here, before anything listens
    if settings.pipelines:
        from fastserve.pipelines.registry import attach_pipelines

        attach_pipelines(settings.pipelines, repository)  # imports custom nodes; checked once models load
    loading = Loading(repository, plan)
    reloader = Reloader(repository, settings.config_path)
    code = uvloop.run(_serve(settings, repository, loading, reloader, worker))
    if loading.busy or reloader.busy or busy_slots(repository) or custom.running():
        # Returning would shut the interpreter (and OpenVINO's plugins) down under a running compile/inference,
        # or join a custom node's thread that may never end.
        what = ("loading" if loading.busy else "reloading" if reloader.busy
                else "inference" if busy_slots(repository) else "custom node")
        log.info("model %s still running: exiting without waiting for it", what)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


class Loading:
    """Compiles the planned models in a daemon thread and reports the outcome to the loop."""

    def __init__(self, repository: Repository, plan: dict[str, dict[int, Path]]) -> None:
        self.repository = repository
        self.plan = plan
        self.thread = threading.Thread(target=self._run, name="fastserve-loader", daemon=True)
        self.done: asyncio.Future[BaseException | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[BaseException | None]:
        self._loop = loop
        self.done = loop.create_future()
        self.thread.start()
        return self.done

    @property
    def busy(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.repository.stop_loading()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self.repository.load_all(self.plan)
        except BaseException as exc:  # reported to the loop, which decides the exit code
            error = exc
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._report, error)
        except RuntimeError:
            pass  # the loop is closed: shutdown did not wait for us

    def _report(self, error: BaseException | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(error)


async def _listen(settings: ServerSettings, state: ServerState, app: App, reuse_port: bool
                  ) -> asyncio.AbstractServer | None:
    hosts = [h.strip() for h in settings.rest_bind_address.split(",") if h.strip()]
    try:
        server = await state.loop.create_server(
            lambda: HttpProtocol(app, state), hosts, settings.rest_port, backlog=2048, reuse_address=True,
            reuse_port=reuse_port or None,
        )
    except OSError as exc:
        log.error("cannot listen on %s port %d: %s", settings.rest_bind_address, settings.rest_port,
                  exc.strerror or exc)
        return None
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    return server


async def _listen_grpc(settings: ServerSettings, app: App, reuse_port: bool
                       ) -> GrpcServer | H2GrpcServer | bool | None:
    """The gRPC server when --port is given (None without; False when it cannot bind), on the
    transport --grpc_transport names."""
    if not settings.grpc_port:
        return None
    rpc: GrpcServer | H2GrpcServer
    if settings.grpc_transport == "grpcio":
        from fastserve.grpc.server import GrpcServer  # grpcio loads only where gRPC is served

        rpc = GrpcServer(settings, app.core, reuse_port, app.metrics)
    else:
        from fastserve.grpc.h2.server import H2GrpcServer

        rpc = H2GrpcServer(settings, app.core, reuse_port, app.metrics)
    return rpc if await rpc.start() else False


async def _stop_grpc(rpc: GrpcServer | H2GrpcServer, timeout: float, force: asyncio.Event) -> None:
    stopping = asyncio.ensure_future(rpc.stop(timeout))
    forced = asyncio.ensure_future(force.wait())
    await asyncio.wait([stopping, forced], return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():  # a second signal: cut the remaining calls now
        await rpc.stop(0)
        await stopping
    forced.cancel()


async def _serve(settings: ServerSettings, repository: Repository, loading: Loading, reloader: Reloader,
                 worker: WorkerRole | None) -> int:
    loop = asyncio.get_running_loop()
    state = ServerState(settings, loop)
    app = App(settings, repository)
    app.reloader = reloader
    server = None
    rpc = None
    if worker is None or not worker.listen_after_load:
        server = await _listen(settings, state, app, worker is not None)
        if server is None:
            return 1
        rpc = await _listen_grpc(settings, app, worker is not None)
        if rpc is False:
            server.close()
            return 1

    stop = asyncio.Event()
    force = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: closing the remaining connections now", sig.name)
            force.set()
        else:
            log.info("%s received: shutting down", sig.name)
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    sweeper = loop.create_task(_sweep(state))
    loaded = loading.start(loop)
    stopping = loop.create_task(stop.wait())
    exit_code = 0
    watcher = None
    await asyncio.wait([loaded, stopping], return_when=asyncio.FIRST_COMPLETED)
    if loaded.done():
        error = loaded.result()
        if error is None and server is None:  # a replacement worker: listen now that it can serve
            server = await _listen(settings, state, app, True)
            rpc = await _listen_grpc(settings, app, True) if server is not None else None
            if server is None or rpc is False:
                exit_code = 1
                stop.set()
        if error is None and server is not None:
            log.info("server ready: %d model(s) loaded", len(repository.models))
            if settings.file_system_poll_wait_seconds > 0:
                watcher = loop.create_task(reloader.watch(settings.file_system_poll_wait_seconds))
            if worker is not None:
                worker.on_ready()
        elif error is not None:
            if isinstance(error, ConfigError):
                log.error("model loading failed: %s", error)
                exit_code = LOAD_FAILED_EXIT
            else:
                log.error("model loading failed", exc_info=error)
                exit_code = 1
            stop.set()
    await stopping
    if loading.busy:
        loading.stop()
    reloader.stop()
    if watcher is not None:
        watcher.cancel()
    busy = sum(connection.unfinished() for connection in state.connections)
    log.info("shutting down: finishing %d request(s)", busy)
    draining = []
    if server is not None:
        draining.append(_drain(state, server, settings.shutdown_timeout, force))
    if rpc:  # GOAWAY, then in-flight calls get the same time as REST's
        draining.append(_stop_grpc(rpc, settings.shutdown_timeout, force))
    await asyncio.gather(*draining)
    await _settle(repository, SETTLE_TIMEOUT)
    sweeper.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("server stopped")
    return exit_code


async def _drain(state: ServerState, server: asyncio.AbstractServer, timeout: float, force: asyncio.Event) -> None:
    """Stop accepting, let in-flight requests finish (bounded), close the rest."""
    state.shutting_down = True
    server.close()
    for connection in list(state.connections):
        connection.shutdown()
    deadline = state.loop.time() + timeout
    while (state.connections or state.tasks) and state.loop.time() < deadline and not force.is_set():
        await asyncio.sleep(DRAIN_POLL)
        for connection in list(state.connections):
            connection.shutdown()
    if state.connections or state.tasks:
        log.warning("closing %d connection(s) with requests unfinished", len(state.connections))
    for connection in list(state.connections):
        connection.abort()
    for task in list(state.tasks):
        task.cancel()


async def _settle(repository: Repository, timeout: float) -> None:
    """Wait (bounded) until no infer request is in use: inferences of cut-off clients end on their own."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while busy_slots(repository) and loop.time() < deadline:
        await asyncio.sleep(DRAIN_POLL / 5)


def busy_slots(repository: Repository) -> int:
    """Infer requests in use over every loaded model version (retiring ones too)."""
    return sum(servable.pool.busy for servable in repository.servables())


async def _sweep(state: ServerState) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        now = state.loop.time()
        for connection in list(state.connections):
            connection.check_timeouts(now)

