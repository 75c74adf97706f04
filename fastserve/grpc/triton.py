"""Triton's ModelConfig and ModelStatistics RPCs of inference.GRPCInferenceService.

Rules: a thin codec around fastserve/triton/documents.py, the lookups REST uses too: the same
dicts, parsed into the messages of inference.proto (their field names are the JSON keys), so the
two transports cannot drift apart. Errors leave as REST's do, mapped once by grpc/status.py
(an unknown model or version is NOT_FOUND). Versions are read as the other RPCs read them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from fastserve.core.inference import InferenceCore
from fastserve.errors import FastServeError
from fastserve.grpc.decode import parse_version
from fastserve.grpc.proto import inference_pb2 as pb
from fastserve.grpc.status import grpc_status
from fastserve.triton.documents import config_document, stats_document

# ServerMetadata's extensions over gRPC: Triton's names of the two served here (binary_tensor_data is REST's).
GRPC_EXTENSIONS = ("model_configuration", "statistics")


class TritonExtensions:
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    async def model_config(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        try:
            doc = config_document(self.core, request.name, parse_version(request.version))
        except FastServeError as exc:
            await context.abort(*grpc_status(exc))
        response = pb.ModelConfigResponse()
        # Keys the proto leaves out (batch_input, model_warmup, ...) are always empty here.
        json_format.ParseDict(doc, response.config, ignore_unknown_fields=True)
        return response

    async def model_statistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        # Triton: an empty name asks for every model.
        try:
            doc = stats_document(self.core, request.name or None, parse_version(request.version))
        except FastServeError as exc:
            await context.abort(*grpc_status(exc))
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse())
