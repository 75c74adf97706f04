"""The gRPC server on OVMS's --port: grpcio's asyncio server, on the same event loop as REST.

Rules: builds the server from the settings (OVMS's 1 GiB message limits both ways; grpcio's
stream limit, see channel_options; --grpc_channel_arguments overrides any of them), adds the
inference, health and reflection services, binds every --grpc_bind_address, and stops with a
grace period (GOAWAY, in-flight calls finish). Handlers run on the loop itself, so the core,
its batchers and pools are shared with REST unchanged. Chosen over a hand-written HTTP/2
server by measurement: docs/grpc.md and bench/RESULTS.md.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from fastserve.core.inference import InferenceCore
from fastserve.grpc.health import add_health
from fastserve.grpc.proto.inference_pb2 import POOL
from fastserve.grpc.service import SERVICE, InferenceService
from fastserve.metrics import Metrics
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.grpc")
GIGABYTE = 1 << 30
HEALTH = "grpc.health.v1.Health"


def reflection_pool() -> Any:
    """The inference messages' own pool (see grpc/proto/generate.py), with the health and
    reflection files added so that reflection describes every service served."""
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    for module in (health_pb2, reflection_pb2):
        try:
            POOL.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return POOL


def channel_options(settings: ServerSettings, reuse_port: bool) -> list[tuple[str, Any]]:
    options: dict[str, Any] = {
        "grpc.max_receive_message_length": GIGABYTE,
        "grpc.max_send_message_length": GIGABYTE,
        # Not OVMS's grpc.max_concurrent_streams = cores: with grpcio, calls a client opens before
        # it has read the server's SETTINGS are refused (RST_STREAM REFUSED_STREAM, UNAVAILABLE
        # to the caller; seen with tritonclient.grpc.aio, 200 calls on a new channel). grpcio's
        # default stays; --grpc_channel_arguments grpc.max_concurrent_streams=N sets it.
        # Only --rest_workers processes share the port; one server alone must own it, so a
        # second server on the same port fails to start instead of splitting the traffic.
        "grpc.so_reuseport": 1 if reuse_port else 0,
    }
    options.update(settings.grpc_channel_arguments)
    return list(options.items())


class GrpcServer:
    def __init__(self, settings: ServerSettings, core: InferenceCore, reuse_port: bool,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.server = grpc.aio.server(options=channel_options(settings, reuse_port))
        self.service = InferenceService(core, settings.grpc_memory_quota, metrics)
        self.server.add_generic_rpc_handlers((self.service.handler(),))
        add_health(self.server, core)
        reflection.enable_server_reflection((SERVICE, HEALTH, reflection.SERVICE_NAME), self.server,
                                            pool=reflection_pool())

    async def start(self) -> bool:
        """Bind and start; False (logged) when an address cannot be bound."""
        settings = self.settings
        hosts = [h.strip() for h in settings.grpc_bind_address.split(",") if h.strip()]
        for host in hosts:
            address = f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}"
            try:
                port = self.server.add_insecure_port(address)
            except RuntimeError as exc:
                port = 0
                reason = str(exc)
            else:
                reason = "port is busy"
            if not port:
                log.error("cannot start the gRPC server at %s - %s", address, reason)
                return False
            log.info("listening on grpc://%s", address)
        await self.server.start()
        return True

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)
