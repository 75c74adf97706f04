"""--grpc_channel_arguments as the h2 transport's limits (the names are grpcio's channel arguments).

The defaults are OVMS's (1 GiB messages both ways) and gRPC's (keepalive pings every 2 hours,
20 s to answer). Every other `grpc.*` argument is accepted, as grpcio accepts unknown ones;
those that configure something this transport does differently are logged once at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastserve.errors import ConfigError
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.grpc")
GIGABYTE = 1 << 30
UNLIMITED_STREAMS = 2**31 - 1  # no limit beyond what a client opens; h2's own default (100) is not used
STREAM_WINDOW = 4 << 20  # bytes a client may send on one stream before we acknowledge them
CONNECTION_WINDOW = 16 << 20
MAX_FRAME = 1 << 20  # DATA frames we accept: fewer, larger frames for big tensors


@dataclass(frozen=True)
class Limits:
    max_receive: int = GIGABYTE
    max_send: int = GIGABYTE
    max_concurrent_streams: int = UNLIMITED_STREAMS
    keepalive_time: float = 7200.0  # seconds between the server's pings; gRPC's default
    keepalive_timeout: float = 20.0
    stream_window: int = STREAM_WINDOW
    max_frame: int = MAX_FRAME
    reuse_port: bool = False


def _size(value: int | str, name: str) -> int:
    if not isinstance(value, int):
        raise ConfigError(f"--grpc_channel_arguments: {name} must be an integer, not {value!r}")
    return GIGABYTE * 1024 if value < 0 else value  # grpcio: -1 is no limit


def limits(settings: ServerSettings, reuse_port: bool) -> Limits:
    found: dict[str, object] = {"reuse_port": reuse_port}
    for name, value in settings.grpc_channel_arguments:
        if name == "grpc.max_receive_message_length":
            found["max_receive"] = _size(value, name)
        elif name == "grpc.max_send_message_length":
            found["max_send"] = _size(value, name)
        elif name == "grpc.max_concurrent_streams":
            found["max_concurrent_streams"] = max(0, min(_size(value, name), UNLIMITED_STREAMS))
        elif name == "grpc.keepalive_time_ms":
            found["keepalive_time"] = max(_size(value, name), 1) / 1000
        elif name == "grpc.keepalive_timeout_ms":
            found["keepalive_timeout"] = max(_size(value, name), 1) / 1000
        elif name == "grpc.http2.max_frame_size":
            found["max_frame"] = max(16384, min(_size(value, name), (1 << 24) - 1))
        elif name == "grpc.http2.lookahead_bytes":
            found["stream_window"] = max(65535, min(_size(value, name), (1 << 31) - 1))
        elif name == "grpc.so_reuseport":
            found["reuse_port"] = bool(value)
        elif name.startswith("grpc."):
            log.info("--grpc_channel_arguments %s=%s: accepted; the h2 transport has no such setting", name, value)
        else:
            log.warning("--grpc_channel_arguments %s=%s: not a gRPC channel argument, ignored", name, value)
    return Limits(**found)  # type: ignore[arg-type]
