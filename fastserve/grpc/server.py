"""The grpcio transport on OVMS's --port: grpcio's asyncio server, on the same event loop as REST.

Rules: builds the server from the settings (OVMS's 1 GiB message limits both ways; grpcio's
stream limit, see channel_options; --grpc_channel_arguments overrides any of them), serves the
method table (grpc/methods.py) through one generic handler, binds every --grpc_bind_address,
and stops with a grace period (GOAWAY, in-flight calls finish). Handlers run on the loop
itself, so the core, its batchers and pools are shared with REST unchanged. The other
transport, grpc/h2/, serves the same table; docs/grpc.md says which is the default and why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from typing import Any

import grpc

from fastserve.core.inference import InferenceCore
from fastserve.grpc import access
from fastserve.grpc.methods import MethodTable, method_table
from fastserve.grpc.reflection import reflection_pool
from fastserve.grpc.rpc import BIDI, SERVER_STREAM, UNARY, Aborted, Method
from fastserve.grpc.service import MemoryQuota
from fastserve.metrics import Metrics
from fastserve.settings import ServerSettings

log = logging.getLogger("fastserve.grpc")
GIGABYTE = 1 << 30

__all__ = ["GrpcServer", "channel_options", "reflection_pool", "bind_hosts"]


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


def bind_hosts(settings: ServerSettings) -> list[str]:
    return [h.strip() for h in settings.grpc_bind_address.split(",") if h.strip()]


class GrpcServer:
    def __init__(self, settings: ServerSettings, core: InferenceCore, reuse_port: bool,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.server = grpc.aio.server(options=channel_options(settings, reuse_port))
        self.table = method_table(core, MemoryQuota(settings.grpc_memory_quota), metrics)
        self.server.add_generic_rpc_handlers((GrpcioMethods(self.table, access.enabled(settings)),))

    async def start(self) -> bool:
        """Bind and start; False (logged) when an address cannot be bound."""
        settings = self.settings
        for host in bind_hosts(settings):
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


class GrpcioMethods(grpc.GenericRpcHandler):
    """The method table as grpcio handlers (built once per method); None lets grpcio answer
    UNIMPLEMENTED for a path of another service."""

    def __init__(self, table: MethodTable, access_log: bool = False) -> None:
        self.table = table
        self.access_log = access_log
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        path = handler_call_details.method  # type: ignore[attr-defined]
        found = self.handlers.get(path)
        if found is None:
            method = self.table.lookup(path)
            if method is None:
                return None
            found = _grpcio_handler(_logged(method, path) if self.access_log else method)
            if path in self.table.methods:  # an unimplemented path is not kept: any client can make them up
                self.handlers[path] = found
        return found


def _grpcio_handler(method: Method) -> grpc.RpcMethodHandler:
    handler, parse = method.handler, method.parse
    if method.kind == UNARY:
        if parse is None:  # bytes in: the handler is served as it is
            return grpc.unary_unary_rpc_method_handler(handler, response_serializer=method.serialize)

        async def unary(body: bytes, context: Any) -> Any:
            try:
                request = parse(body)
            except Aborted as exc:
                await context.abort(exc.code, exc.details)
            return await handler(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, response_serializer=method.serialize)
    if method.kind == SERVER_STREAM:
        async def server_stream(body: bytes, context: Any) -> Any:
            try:
                request = parse(body) if parse is not None else body
            except Aborted as exc:
                await context.abort(exc.code, exc.details)
            async for response in handler(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(server_stream, response_serializer=method.serialize)
    assert method.kind == BIDI

    async def bidi(requests: Any, context: Any) -> Any:
        async def parsed() -> Any:
            async for body in requests:
                try:
                    yield parse(body) if parse is not None else body
                except Aborted as exc:
                    await context.abort(exc.code, exc.details)

        result = handler(parsed(), context)
        if inspect.isasyncgen(result):
            async for response in result:
                yield response
        else:
            await result

    return grpc.stream_stream_rpc_method_handler(bidi, response_serializer=method.serialize)


def _code(context: Any, error: BaseException | None) -> int:
    """The status a call ended with: its abort's code, 1 when cancelled, 2 (UNKNOWN) when it raised."""
    if isinstance(error, asyncio.CancelledError):
        return 1
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    if code is not None:
        return int(code)
    return 0 if error is None else 2


def _logged(method: Method, path: str) -> Method:
    """The method with an access log line when each call ends (grpc/access.py). A unary or
    server-stream request is parsed here, so that a request that does not parse is logged too."""
    handler, parse = method.handler, method.parse

    def line(context: Any, error: BaseException | None) -> None:
        access.write(context.peer(), "POST", path, _code(context, error))

    async def parsed(request: Any, context: Any) -> Any:
        if parse is None or method.kind == BIDI:
            return request
        try:
            return parse(request)
        except Aborted as exc:
            await context.abort(exc.code, exc.details)

    if method.kind == UNARY:
        async def unary(request: Any, context: Any) -> Any:
            try:
                response = await handler(await parsed(request, context), context)
            except BaseException as exc:
                line(context, exc)
                raise
            line(context, None)
            return response

        return dataclasses.replace(method, handler=unary, parse=None)

    async def stream(request: Any, context: Any) -> Any:
        try:
            result = handler(await parsed(request, context), context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:
                await result
        except BaseException as exc:
            line(context, exc)
            raise
        line(context, None)

    return dataclasses.replace(method, handler=stream, parse=parse if method.kind == BIDI else None)
