"""grpc.reflection.v1alpha.ServerReflection, served from the one method table to both transports.

Enough for `grpcurl list` / `describe` and grpcio's ProtoReflectionDescriptorDatabase: the
service list, files by name, by symbol and by extension (each with the files it depends on,
so one answer describes a service completely), and extension numbers. The messages are
grpc_reflection's own classes; the descriptors come from `reflection_pool()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection_pb2 as rpb

from fastserve.grpc.proto.inference_pb2 import POOL

SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection"


def reflection_pool() -> Any:
    """The inference messages' own pool (see grpc/proto/generate.py), with the health and
    reflection files added so that reflection describes every service served."""
    from grpc_health.v1 import health_pb2

    for module in (health_pb2, rpb):
        try:
            POOL.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return POOL


class ReflectionService:
    def __init__(self, services: tuple[str, ...], pool: Any) -> None:
        self.services = tuple(sorted(services))
        self.pool = pool

    async def info(self, requests: AsyncIterable[rpb.ServerReflectionRequest], context: Any
                   ) -> AsyncIterator[rpb.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)

    def answer(self, request: rpb.ServerReflectionRequest) -> rpb.ServerReflectionResponse:
        pool = self.pool
        asked = request.WhichOneof("message_request")
        try:
            if asked == "list_services":
                listed = rpb.ListServiceResponse(service=[rpb.ServiceResponse(name=n) for n in self.services])
                return rpb.ServerReflectionResponse(original_request=request, list_services_response=listed)
            if asked == "file_by_filename":
                return self._files(request, pool.FindFileByName(request.file_by_filename))
            if asked == "file_containing_symbol":
                return self._files(request, pool.FindFileContainingSymbol(request.file_containing_symbol))
            if asked == "file_containing_extension":
                wanted = request.file_containing_extension
                extension = pool.FindExtensionByNumber(pool.FindMessageTypeByName(wanted.containing_type),
                                                       wanted.extension_number)
                return self._files(request, pool.FindFileContainingSymbol(extension.full_name))
            if asked == "all_extension_numbers_of_type":
                message = pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(e.number for e in pool.FindAllExtensions(message))
                found = rpb.ExtensionNumberResponse(base_type_name=message.full_name, extension_number=numbers)
                return rpb.ServerReflectionResponse(original_request=request, all_extension_numbers_response=found)
        except KeyError:
            return _error(request, grpc.StatusCode.NOT_FOUND, "not found")
        return _error(request, grpc.StatusCode.INVALID_ARGUMENT, "no request in the message")

    @staticmethod
    def _files(request: rpb.ServerReflectionRequest, file: Any) -> rpb.ServerReflectionResponse:
        # The file and everything it imports, each once: the client needs them all to build the types.
        seen: dict[str, bytes] = {}
        pending = [file]
        while pending:
            current = pending.pop()
            if current.name not in seen:
                seen[current.name] = current.serialized_pb
                pending.extend(current.dependencies)
        files = rpb.FileDescriptorResponse(file_descriptor_proto=list(seen.values()))
        return rpb.ServerReflectionResponse(original_request=request, file_descriptor_response=files)


def _error(request: rpb.ServerReflectionRequest, code: grpc.StatusCode, message: str) -> rpb.ServerReflectionResponse:
    failed = rpb.ErrorResponse(error_code=code.value[0], error_message=message)
    return rpb.ServerReflectionResponse(original_request=request, error_response=failed)
