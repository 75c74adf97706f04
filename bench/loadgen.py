"""Closed-loop HTTP load: wrk when it is installed, else a lean uvloop client of our own.

Rules: N keep-alive connections, each sending the same request again as soon as the answer is
in (closed loop, no pipelining), for a fixed time, to 127.0.0.1 only. A run reports requests,
req/s, p50/p99 latency, errors (socket errors and non-2xx answers) and the load generator's own
CPU seconds, so a reader can see it did not eat the CPU it measures. wrk (C, one thread) costs
about a tenth of a core per 10k req/s here; the Python client about five times that, which is why
wrk is preferred (`apt-get install -y wrk`).
Usage as a script (the fallback client): python bench/loadgen.py URL -c 32 -d 5 [--body FILE] [-H 'k: v']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# wrk's default socket timeout is 2 s; a queue of 32 ResNet-50 requests on 2 cores takes longer.
TIMEOUT_S = 60


@dataclass
class Target:
    url: str
    method: str = "GET"
    body: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        host = urlsplit(self.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load goes to this machine only, not {host}")


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    loadgen_cpu_s: float
    tool: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_load(target: Target, connections: int, seconds: float) -> LoadResult:
    """One closed-loop run with wrk if present, else with the Python client (both as child processes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if shutil.which("wrk"):
        result = _run_wrk(target, connections, seconds)
    else:
        result = _run_python(target, connections, seconds)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.loadgen_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


# wrk

_LUA = """
wrk.method = "{method}"
{body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT %d %d %.0f %.0f %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _lua_script(target: Target) -> str:
    body = ""
    if target.body is not None:
        body = f'local f = assert(io.open("{target.body}", "rb"))\nwrk.body = f:read("*a")\nf:close()'
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    return _LUA.format(method=target.method, body=body, headers=headers)


def _run_wrk(target: Target, connections: int, seconds: float) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua_script(target))
    try:
        # wrk takes whole seconds.
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={TIMEOUT_S}s",
                   "-s", script.name, target.url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + TIMEOUT_S + 30)
    finally:
        os.unlink(script.name)
    found = re.search(r"BENCH_RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", done.stdout)
    if found is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    requests, duration_us, p50, p99, errors = (int(v) for v in found.groups())
    elapsed = duration_us / 1e6
    return LoadResult(requests, elapsed, requests / elapsed, p50 / 1000, p99 / 1000, errors, 0.0, "wrk")


def _run_python(target: Target, connections: int, seconds: float) -> LoadResult:
    command = [sys.executable, str(Path(__file__).resolve()), target.url, "-c", str(connections),
               "-d", str(seconds), "-X", target.method]
    if target.body is not None:
        command += ["--body", str(target.body)]
    for key, value in target.headers.items():
        command += ["-H", f"{key}: {value}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + TIMEOUT_S + 30)
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr}")
    return LoadResult(**json.loads(done.stdout.strip().splitlines()[-1]))


# The Python client (the fallback; run in its own process)


class _Client(asyncio.Protocol):
    """One connection: send, wait for the whole answer, record, send again."""

    def __init__(self, request: bytes, deadline: float, latencies: list[float], stats: dict[str, Any]) -> None:
        import httptools

        self.request = request
        self.deadline = deadline
        self.latencies = latencies
        self.ok_latencies: list[float] = stats["ok"]
        self.answered = 0
        self.stats = stats
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        status = self.parser.get_status_code()
        self.latencies.append(now - self.sent_at)
        if not 200 <= status < 300:
            self.stats["errors"] += 1
            self.stats["refused"] += status == 503
        elif self.answered or not self.stats["skip_first"]:
            self.ok_latencies.append(now - self.sent_at)
        self.answered += 1
        if now < self.deadline:
            self._send()
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.deadline:
            self.stats["errors"] += 1
        if not self.closed.done():
            self.closed.set_result(None)


async def _client_main(args: argparse.Namespace) -> dict[str, object]:
    parts = urlsplit(args.url)
    body = Path(args.body).read_bytes() if args.body else b""
    head = [f"{args.method} {parts.path or '/'} HTTP/1.1", f"host: {parts.netloc}", f"content-length: {len(body)}"]
    head += args.header
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    # --statuses leaves each connection's first success out of the successes' latency: with hundreds of
    # connections opened at once, a few handshakes overflow the server's accept queue and their first
    # request waits for a TCP retransmission (~1 s), which is connection setup, not overload.
    stats: dict[str, Any] = {"errors": 0, "refused": 0, "ok": [], "skip_first": args.statuses}
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    deadline = started + args.duration
    clients = []
    for _ in range(args.connections):
        _, client = await loop.create_connection(
            lambda: _Client(request, deadline, latencies, stats), parts.hostname, parts.port or 80
        )
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in clients)), args.duration + TIMEOUT_S)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    out = LoadResult(
        requests=len(latencies), seconds=elapsed, rps=len(latencies) / elapsed,
        p50_ms=ordered[len(ordered) // 2] * 1000, p99_ms=_p99(ordered) * 1000,
        errors=stats["errors"], loadgen_cpu_s=0.0, tool="python",
    ).to_dict()
    if args.statuses:  # bench/overload.py: successes and 503s apart
        ok = sorted(stats["ok"]) or [0.0]
        out.update(ok=len(stats["ok"]), refused=stats["refused"], ok_p50_ms=ok[len(ok) // 2] * 1000,
                   ok_p99_ms=_p99(ok) * 1000)
    return out


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closed-loop HTTP load (the fallback when wrk is missing)")
    parser.add_argument("url")
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-X", "--method", default="GET")
    parser.add_argument("--body")
    parser.add_argument("-H", "--header", action="append", default=[])
    parser.add_argument("--statuses", action="store_true", help="also successes and 503s apart, with their latency")
    args = parser.parse_args(argv)
    Target(args.url)  # refuses anything but this machine
    import uvloop

    print(json.dumps(uvloop.run(_client_main(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
