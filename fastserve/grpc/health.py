"""grpc.health.v1.Health, for Kubernetes' native gRPC probes and grpc_health_probe.

Service "" (and "inference.GRPCInferenceService") is the server: SERVING once the models are
loaded, as REST's /v2/health/ready. A model or pipeline name is SERVING while it can take an
inference (a version is loaded), NOT_SERVING while it cannot; any other name is NOT_FOUND
from Check and SERVICE_UNKNOWN from Watch, as the health protocol asks. The status is read
live on each call, so nothing has to be told when models load or retire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from fastserve.core.inference import InferenceCore
from fastserve.errors import FastServeError, ModelNotFound
from fastserve.grpc.service import SERVICE

Status = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
WATCH_POLL_SECONDS = 1.0  # how soon a Watch stream sees a change


class HealthService:
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    def status(self, service: str) -> Any:
        repository = self.core.repository
        if service in ("", SERVICE):
            return SERVING if repository.ready else NOT_SERVING
        try:
            try:
                repository.get(service, None)
            except ModelNotFound:
                self.core.pipeline(service)
        except ModelNotFound:
            return SERVICE_UNKNOWN
        except FastServeError:
            return NOT_SERVING  # known, but no version can serve now
        return SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:  # noqa: N802
        status = self.status(request.service)
        if status == SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any  # noqa: N802
                    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = self.status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_POLL_SECONDS)

