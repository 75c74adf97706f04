"""The method table: every gRPC method fastserve serves, by path, for both transports.

Rules: the single place methods are registered (grpcio's server and the h2 transport both
look calls up here, so they serve the same methods with the same parsing and errors). Add a
service or method by `table.add(...)` in `method_table`. A method of
inference.GRPCInferenceService that is not registered answers UNIMPLEMENTED naming it; a path
of another service is not found (`lookup` gives None and the transport answers UNIMPLEMENTED).
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from fastserve.core.inference import InferenceCore
from fastserve.grpc.health import HealthService
from fastserve.grpc.proto import inference_pb2 as pb
from fastserve.grpc.reflection import SERVICE_NAME as REFLECTION
from fastserve.grpc.reflection import ReflectionService, reflection_pool
from fastserve.grpc.rpc import BIDI, SERVER_STREAM, UNARY, Method, parser, serialize
from fastserve.grpc.service import SERVICE, InferenceService, MemoryQuota
from fastserve.grpc.triton import TritonExtensions
from fastserve.metrics import Metrics

HEALTH = "grpc.health.v1.Health"


class MethodTable:
    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def add(self, service: str, name: str, method: Method) -> None:
        self.methods[f"/{service}/{name}"] = method

    def services(self) -> tuple[str, ...]:
        return tuple(sorted({path.split("/")[1] for path in self.methods}))

    def lookup(self, path: str) -> Method | None:
        found = self.methods.get(path)
        if found is not None:
            return found
        if path.startswith(f"/{SERVICE}/"):
            return unimplemented(path.rsplit("/", 1)[1])
        return None


def method_table(core: InferenceCore, quota: MemoryQuota, metrics: Metrics | None = None) -> MethodTable:
    table = MethodTable()
    inference = InferenceService(core, quota, metrics)

    def typed(handler: Any, request_type: Any) -> Method:
        return Method(UNARY, handler, parser(request_type), serialize)

    table.add(SERVICE, "ServerLive", typed(inference.server_live, pb.ServerLiveRequest))
    table.add(SERVICE, "ServerReady", typed(inference.server_ready, pb.ServerReadyRequest))
    table.add(SERVICE, "ServerMetadata", typed(inference.server_metadata, pb.ServerMetadataRequest))
    table.add(SERVICE, "ModelReady", typed(inference.model_ready, pb.ModelReadyRequest))
    table.add(SERVICE, "ModelMetadata", typed(inference.model_metadata, pb.ModelMetadataRequest))
    table.add(SERVICE, "ModelInfer", Method(UNARY, inference.model_infer))  # bytes in, bytes out
    triton = TritonExtensions(core)  # Triton's model configuration and statistics extensions
    table.add(SERVICE, "ModelConfig", typed(triton.model_config, pb.ModelConfigRequest))
    table.add(SERVICE, "ModelStatistics", typed(triton.model_statistics, pb.ModelStatisticsRequest))

    health = HealthService(core)
    table.add(HEALTH, "Check", typed(health.Check, health_pb2.HealthCheckRequest))
    table.add(HEALTH, "Watch", Method(SERVER_STREAM, health.Watch, parser(health_pb2.HealthCheckRequest), serialize))

    # Last, so that it lists every service registered above (and itself).
    reflection = ReflectionService((*table.services(), REFLECTION), reflection_pool())
    table.add(REFLECTION, "ServerReflectionInfo",
              Method(BIDI, reflection.info, parser(reflection_pb2.ServerReflectionRequest), serialize))
    return table


def unimplemented(name: str) -> Method:
    message = f"{SERVICE}/{name} is not implemented by fastserve"

    async def refuse(request: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    # ModelStreamInfer is a bidirectional stream: answered without reading it.
    return Method(BIDI if name == "ModelStreamInfer" else UNARY, refuse)
