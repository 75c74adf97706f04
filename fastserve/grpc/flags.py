"""OVMS's gRPC flags -> ServerSettings fields, checked as OVMS checks them.

Rules: imports no grpc (the CLI stays light, and the workers' parent never loads grpcio, so
forking it is safe). The mapping of each flag onto grpcio is documented in docs/grpc.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastserve.errors import ConfigError

GIGABYTE = 1 << 30
DEFAULT_MEMORY_QUOTA = 2 * GIGABYTE  # OVMS's --grpc_memory_quota default
TRANSPORTS = ("h2", "grpcio")
DEFAULT_TRANSPORT = "h2"


def add_grpc_flags(p: argparse.ArgumentParser) -> None:
    grpc = p.add_argument_group("gRPC server (KServe v2 gRPC API, as OVMS)")
    grpc.add_argument("--port", type=int, default=0,
                      help="gRPC port (default 0: no gRPC server, as OVMS since 2023)")
    grpc.add_argument("--grpc_bind_address", default="0.0.0.0", help="address(es) to bind, comma-separated")
    grpc.add_argument("--grpc_workers", type=int, default=1,
                      help="gRPC server processes: fastserve runs max(--rest_workers, --grpc_workers) worker "
                      "processes, each serving REST and gRPC on the shared ports")
    grpc.add_argument("--grpc_max_threads", type=int,
                      help="accepted for OVMS command lines; fastserve's gRPC handlers run on the event loop, "
                      "no thread per call, so there is no thread pool to bound (logged when given)")
    grpc.add_argument("--grpc_memory_quota", type=int, default=DEFAULT_MEMORY_QUOTA,
                      help="bytes of gRPC request messages in progress at once; more get RESOURCE_EXHAUSTED "
                      "(default 2 GiB as OVMS; 0: no limit)")
    # fastserve's own (OVMS has one gRPC server): which transport serves --port; docs/grpc.md says why h2.
    grpc.add_argument("--grpc_transport", choices=TRANSPORTS, default=DEFAULT_TRANSPORT,
                      help="fastserve only: the gRPC transport, h2 (hand-written HTTP/2 on the event loop, "
                      "the default) or grpcio (grpcio's asyncio server)")
    grpc.add_argument("--grpc_channel_arguments",
                      help="comma-separated key=value gRPC channel arguments, e.g. "
                      "grpc.max_receive_message_length=104857600 (numbers are passed as integers)")


def parse_channel_arguments(text: str | None) -> tuple[tuple[str, int | str], ...]:
    """OVMS's format: key=value pairs split on commas; a value that is an integer is passed as one."""
    if not text:
        return ()
    parsed: list[tuple[str, int | str]] = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or "=" in value:
            raise ConfigError(f"--grpc_channel_arguments: wrong format in {item!r} (expected key=value, "
                              f"comma-separated): {text}")
        try:
            parsed.append((key, int(value)))
        except ValueError:
            parsed.append((key, value))
    return tuple(parsed)


def grpc_settings(args: argparse.Namespace) -> dict[str, Any]:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: port number out of range from 0 to 65535 ({args.port})")
    if not any(host.strip() for host in args.grpc_bind_address.split(",")):
        raise ConfigError("--grpc_bind_address: no address given")
    if args.grpc_workers < 1:
        raise ConfigError("--grpc_workers: must be at least 1")
    for flag in ("grpc_max_threads", "grpc_memory_quota"):
        value = getattr(args, flag)
        if value is not None and value < 0:
            raise ConfigError(f"--{flag}: must not be negative")
    return {
        "grpc_port": args.port,
        "grpc_bind_address": args.grpc_bind_address,
        "grpc_workers": args.grpc_workers,
        "grpc_max_threads": args.grpc_max_threads,
        "grpc_memory_quota": args.grpc_memory_quota or (1 << 62),
        "grpc_channel_arguments": parse_channel_arguments(args.grpc_channel_arguments),
        "grpc_transport": args.grpc_transport,
    }
