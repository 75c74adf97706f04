"""The gRPC access log: at DEBUG, one line per call, as REST's (fastserve/http/protocol.py).

`127.0.0.1:51234 "POST /inference.GRPCInferenceService/ModelInfer" 0`: the peer, the HTTP
method and path of the call, and its gRPC status code (0 OK; 1 for a call the client
cancelled). Both transports write it when the call ends, under the logger fastserve.grpc.
"""

from __future__ import annotations

import logging

from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.grpc")


def enabled(settings: ServerSettings) -> bool:
    return settings.log_level in ("DEBUG", "TRACE")


def peer(address: str) -> str:
    """gRPC's peer names ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000") as REST's log writes them."""
    return address.split(":", 1)[1] if address.startswith(("ipv4:", "ipv6:")) else (address or "-")


def write(address: str, method: str, path: str, code: int | str) -> None:
    log.debug('%s "%s %s" %s', peer(address), method, path, code)
