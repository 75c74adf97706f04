"""Micro-benchmark of the per-request Python cost: fastserve's HttpProtocol + App against the bare protocol.

Rules: no sockets and no load generator: request bytes are fed to the protocol objects with a
transport that only counts what is written, so the figure is the CPU our code spends per
request (parse, route, decode, infer, encode, head) without the kernel's share, and it is
steady even on a busy machine (the best of several rounds is kept). The syscalls (one read and
one write per request) come on top in a real server, the same for every server.
Usage: python bench/micro.py [--rounds 5] [--requests 20000] [--only health,add_json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import models  # noqa: E402
from bench.bare_server import BareProtocol  # noqa: E402


class CountingTransport:
    """The part of a uvloop transport the protocols use; writes are counted and dropped."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += len(data)

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.written += len(part)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write_eof(self) -> None:
        pass

    def abort(self) -> None:
        self.closed = True


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """What wrk sends: request line, Host, our headers, Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8000"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def time_protocol(
    protocol: Any, data: bytes, count: int, rounds: int, loop: asyncio.AbstractEventLoop
) -> tuple[float, float]:
    """Best-of-rounds (wall, process CPU) microseconds per request; awaitables are run to completion.

    Process CPU counts OpenVINO's own threads too; on a shared machine it is the steadier figure.
    """
    best_wall = best_cpu = float("inf")
    state = getattr(protocol, "state", None)
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            protocol.data_received(data)
            if state is not None and state.tasks:  # an awaitable response: finish it before the next request
                loop.run_until_complete(_drain(protocol))
        best_wall = min(best_wall, (time.perf_counter() - wall) / count * 1e6)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / count * 1e6)
    return best_wall, best_cpu


async def _drain(protocol: Any) -> None:
    state = getattr(protocol, "state", None)
    while state is not None and (state.tasks or protocol.active is not None):
        await asyncio.sleep(0)


def fastserve_protocol(config: Path, loop: asyncio.AbstractEventLoop) -> Any:
    from fastserve.config import load_config_file
    from fastserve.handlers import App
    from fastserve.http.protocol import HttpProtocol
    from fastserve.http.state import ServerState
    from fastserve.models.repository import Repository
    from fastserve.settings import ServerSettings

    model_settings, _ = load_config_file(config)
    settings = ServerSettings(models=tuple(model_settings), config_path=config)
    repository = Repository(settings.models, None)
    repository.load_all(repository.plan())
    state = ServerState(settings, loop)
    protocol = HttpProtocol(App(settings, repository), state)
    protocol.connection_made(CountingTransport())  # type: ignore[arg-type]
    return protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    root = Path(tempfile.mkdtemp(prefix="fastserve-micro-"))
    models.save(models.build_add_model(), root, "add")
    # Pinned inline (the default `auto` may move a model to async on a busy machine, see servable.py).
    config = models.write_config(root, [models.ServedModel("add", "add", {"execution_mode": "inline"})])
    fast = fastserve_protocol(config, loop)
    bare = BareProtocol()
    bare.connection_made(CountingTransport())  # type: ignore[arg-type]
    add_body = models.json_body(models.add_inputs())
    cases = {
        "health/bare": (bare, request_bytes("GET", "/v2/health/live")),
        "health/fastserve": (fast, request_bytes("GET", "/v2/health/live")),
        "add_json/fastserve": (fast, request_bytes("POST", "/v2/models/add/infer", add_body,
                                                   {"Content-Type": "application/json"})),
    }
    for name, (protocol, data) in cases.items():
        if args.only and not any(word in name for word in args.only.split(",")):
            continue
        wall, cpu = time_protocol(protocol, data, args.requests, args.rounds, loop)
        print(f"{name:24s} {wall:8.2f} us/request wall {cpu:8.2f} us/request CPU", flush=True)
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
