"""--rest_workers N: N server processes sharing one port, supervised by this (parent) process.

Rules: the parent serves nothing, never imports OpenVINO and starts no threads, so forking it is
safe; each worker is a whole server (server.run: its own loop, models, reload watcher) that
binds the port with SO_REUSEPORT, and the kernel spreads new connections over the workers'
sockets by a hash of the client address (one shared accept socket would let one busy loop take
bursts of connections). The parent reserves the port first (bound, not listening), so
--rest_port 0 gives every worker the same port and nothing else can take it meanwhile.

Supervision: a worker that dies after it was ready is replaced (after RESTART_DELAY, doubling
while it keeps dying, up to RESTART_DELAY_MAX); one that fails before it was ever ready stops
the server with its exit code (a bad model is a configuration problem, exit 2, as without
workers). SIGTERM/SIGINT are forwarded to every worker, each time they arrive (the second one
cuts the workers' drain short); the parent exits once all workers have, 0 when they all
drained cleanly. Workers run in their own process group, so a terminal's Ctrl-C reaches them
once, through the parent; and they get SIGTERM if the parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass

from fastserve.errors import ConfigError
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.workers")
# A replaced worker starts after this delay, doubled for each crash within CRASH_WINDOW, so a
# worker that dies at once (a broken model on disk) costs little CPU while the others serve.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
CRASH_WINDOW = 60.0
POLL = 0.5  # seconds between checks of exited workers when no signal or message wakes us
PR_SET_PDEATHSIG = 1  # linux/prctl.h
CONFIG_ERROR_EXIT = 2


@dataclass
class Worker:
    index: int
    pid: int
    ready_fd: int  # read end of the pipe the worker writes b"R" to once its models are loaded
    started: float
    ready: bool = False
    silent: bool = False  # its pipe reached EOF (it is exiting): nothing more to read


class Supervisor:
    def __init__(self, settings: ServerSettings, reserved: list[socket.socket]) -> None:
        self.settings = settings
        self.reserved = reserved
        self.workers: dict[int, Worker] = {}  # by pid
        self.crashes: dict[int, list[float]] = {}  # by worker index: when it died
        self.restarts: dict[int, float] = {}  # worker index -> when to start it again
        self.generation_ready: set[int] = set()  # indexes that were ready at least once
        self.signals: list[int] = []
        self.wake_fds: tuple[int, int] = (-1, -1)  # the parent's signal wake-up pipe
        self.stopping = False
        self.exit_code = 0

    # Parent

    def run(self) -> int:
        wake_r, wake_w = self.wake_fds = os.pipe()
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _wake_only)  # an exit wakes select at once
        try:
            for index in range(self.settings.rest_workers):
                self._spawn(index)
            while self.workers or (self.restarts and not self.stopping):
                self._wait(wake_r)
                self._forward_signals()
                self._reap()
                self._restart_due()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
        log.info("all workers stopped")
        return self.exit_code

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _wait(self, wake_fd: int) -> None:
        fds = [wake_fd, *(w.ready_fd for w in self.workers.values() if not w.ready and not w.silent)]
        due = min(self.restarts.values(), default=None)
        timeout = POLL if due is None else max(0.0, min(POLL, due - time.monotonic()))
        readable, _, _ = select.select(fds, [], [], timeout)
        for fd in readable:
            if fd == wake_fd:
                os.read(wake_fd, 512)
                continue
            worker = next(w for w in self.workers.values() if w.ready_fd == fd)
            message = os.read(fd, 1)
            worker.silent = not message
            if message == b"R":
                worker.ready = True
                self.generation_ready.add(worker.index)
                log.info("worker %d (pid %d) ready", worker.index, worker.pid)
                if len(self.generation_ready) == self.settings.rest_workers and all(
                        w.ready for w in self.workers.values()):
                    log.info("server ready: %d workers", len(self.workers))

    def _forward_signals(self) -> None:
        while self.signals:
            sig = signal.Signals(self.signals.pop(0))
            if not self.stopping:
                log.info("%s received: stopping %d worker(s)", sig.name, len(self.workers))
                self.stopping = True
                self.restarts.clear()
                for sock in self.reserved:
                    sock.close()
            for worker in self.workers.values():
                _kill(worker.pid, sig)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.ready_fd)
            code = os.waitstatus_to_exitcode(status)
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
            if self.stopping:
                log.info("worker %d (pid %d) exited with %s", worker.index, pid, how)
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):  # signalled before its server took over: clean
                    self.exit_code = max(self.exit_code, 1 if code < 0 else code)
            elif worker.index not in self.generation_ready:
                log.error("worker %d (pid %d) exited with %s before it was ready: stopping", worker.index, pid, how)
                self.exit_code = code if code > 0 else 1
                self.signals.append(signal.SIGTERM)
                self._forward_signals()
            else:
                self._schedule_restart(worker, how)

    def _schedule_restart(self, worker: Worker, how: str) -> None:
        now = time.monotonic()
        recent = [t for t in self.crashes.get(worker.index, []) if now - t < CRASH_WINDOW] + [now]
        self.crashes[worker.index] = recent
        delay = min(RESTART_DELAY * 2 ** (len(recent) - 1), RESTART_DELAY_MAX)
        log.warning("worker %d (pid %d) exited with %s: starting a new one in %.1f s", worker.index, worker.pid,
                    how, delay)
        self.restarts[worker.index] = now + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, due in list(self.restarts.items()):
            if due <= now and not self.stopping:
                del self.restarts[index]
                self._spawn(index)

    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os._exit(self._child(index, ready_w, parent))
        os.close(ready_w)
        self.workers[pid] = Worker(index, pid, ready_r, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    # Worker (after fork)

    def _child(self, index: int, ready_fd: int, parent: int) -> int:
        code = 1
        try:
            os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the parent only, which forwards it once
            _die_with(parent)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)  # the server installs its own once its loop runs
            for sock in self.reserved:
                sock.close()
            for fd in (*self.wake_fds, *(w.ready_fd for w in self.workers.values())):
                os.close(fd)  # the parent's, inherited by fork
            _tag_log_lines(index)
            from fastserve.server import WorkerRole, run

            # A replacement listens only once loaded: until then its siblings take every connection.
            role = WorkerRole(lambda: _tell(ready_fd), listen_after_load=index in self.generation_ready)
            code = run(self.settings, role)
        except ConfigError as exc:
            log.error("%s", exc)
            code = CONFIG_ERROR_EXIT
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        return code


def supervise(settings: ServerSettings) -> int:
    """Reserve the port, start and watch the workers; the exit code."""
    try:
        reserved, port = reserve(settings.rest_bind_address, settings.rest_port)
    except OSError as exc:
        log.error("cannot listen on %s port %d: %s", settings.rest_bind_address, settings.rest_port,
                  exc.strerror or exc)
        return 1
    if settings.grpc_port:  # held like the REST port, so a busy port is found here, not in each worker
        try:
            held, _ = reserve(settings.grpc_bind_address, settings.grpc_port)
        except OSError as exc:
            log.error("cannot start the gRPC server at %s port %d: %s", settings.grpc_bind_address,
                      settings.grpc_port, exc.strerror or exc)
            for sock in reserved:
                sock.close()
            return 1
        reserved += held
    log.info("%d workers sharing port %d%s (SO_REUSEPORT)", settings.rest_workers, port,
             f" and gRPC port {settings.grpc_port}" if settings.grpc_port else "")
    return Supervisor(dataclasses.replace(settings, rest_port=port), reserved).run()


def reserve(bind_address: str, port: int) -> tuple[list[socket.socket], int]:
    """One bound, non-listening SO_REUSEPORT socket per address, all on one port (picked when 0)."""
    reserved: list[socket.socket] = []
    try:
        for host in (h.strip() for h in bind_address.split(",") if h.strip()):
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, address = infos[0]
            if port:
                # Someone listening there without SO_REUSEPORT? Find out now, not in every worker.
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
            sock = socket.socket(family, socket.SOCK_STREAM)
            reserved.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            port = sock.getsockname()[1]
    except OSError:
        for sock in reserved:
            sock.close()
        raise
    return reserved, port


def _tell(fd: int) -> None:
    os.write(fd, b"R")


def _wake_only(signum: int, frame: object) -> None:
    """SIGCHLD: nothing to do here; its byte on the wake-up pipe ends the select."""


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it exited already; the next reap sees it


def _die_with(parent: int) -> None:
    """Linux: SIGTERM (a graceful drain) when the parent dies, so no worker outlives a killed supervisor."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _tag_log_lines(index: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"[%(asctime)s][%(levelname)s][%(name)s][worker {index}] %(message)s"))
