"""inference.GRPCInferenceService: the KServe v2 RPCs, each a thin codec around the inference core.

Rules: like handlers.py for REST, the only gRPC module that knows the repository and the core
together, and knows no transport: each method takes `(request, context)`, and `context` is
grpcio's or the h2 transport's (both have `abort` and `time_remaining`). ModelInfer takes the
request's bytes (parsed here, so a bad message gets OVMS's answer and not grpcio's) and returns
the response's bytes (encoded by grpc/encode.py); the small RPCs use the generated classes.
Every error leaves through `_abort`, which maps it once (grpc/status.py). The methods are
registered in grpc/methods.py, the one table both transports serve.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from time import perf_counter
from typing import Any

import grpc
import orjson

from fastserve import SERVER_NAME, __version__
from fastserve.core.inference import InferenceCore, Outcome
from fastserve.core.trace import Trace
from fastserve.errors import FastServeError, ModelNotFound, NotFound, Unavailable
from fastserve.grpc.decode import NotAMessage, decode_request, parse_request, parse_version
from fastserve.grpc.encode import encode_outcome
from fastserve.grpc.proto import inference_pb2 as pb
from fastserve.grpc.rawsplit import split_raw
from fastserve.grpc.rpc import ABORTS
from fastserve.grpc.status import NO_RESULTS, grpc_status
from fastserve.grpc.triton import GRPC_EXTENSIONS
from fastserve.metrics import Metrics, ModelMetrics
from fastserve.models.repository import Repository

log = logging.getLogger("fastserve.grpc")
SERVICE = "inference.GRPCInferenceService"


class MemoryQuota:
    """Bytes of request messages being worked on, bounded by --grpc_memory_quota (OVMS: 2 GiB).

    grpcio has received a message before the handler runs; past the quota the work is refused
    (RESOURCE_EXHAUSTED) instead of decoded and queued, so memory stays bounded under overload.
    The h2 transport also counts a message while it is still arriving (from its length prefix)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def refusal(self, size: int) -> str | None:
        """Why `size` more bytes do not fit (None: they do)."""
        if self.used + size <= self.limit:
            return None
        return (f"gRPC memory quota exceeded: {self.used + size} bytes of requests in progress, "
                f"the limit (--grpc_memory_quota) is {self.limit}")


class InferenceService:
    def __init__(self, core: InferenceCore, quota: MemoryQuota, metrics: Metrics | None = None) -> None:
        self.repository: Repository = core.repository
        self.core = core
        self.quota = quota
        self.metrics = metrics  # OVMS's families, interface="gRPC"; None: --metrics_enable is off

    # Server

    async def server_live(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.repository.ready)

    async def server_metadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        # OVMS's lists none; Triton's two here are what perf_analyzer looks for before it asks for statistics.
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=GRPC_EXTENSIONS)

    # Models

    async def model_ready(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        counts = None
        if self.metrics is not None and request.name in self.repository.models:
            counts = self.metrics.ready_counts(request.name, grpc=True)
        try:
            version = parse_version(request.version)
            try:
                self.repository.get(request.name, version)
            except ModelNotFound:
                self.core.pipeline(request.name)
            except Unavailable as exc:
                raise NotFound(exc.message) from None  # OVMS: NOT_FOUND, not ready: false
        except FastServeError as exc:
            if counts is not None:
                counts[1] += 1
            await _abort(context, exc)
        if counts is not None:
            counts[0] += 1
        return pb.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        counters = None
        try:
            version = parse_version(request.version)
            try:
                servable = self.repository.get(request.name, version)
                if self.metrics is not None:
                    counters = self.metrics.model(servable.name, servable.version).grpc
                document = self.repository.metadata(request.name, version)
            except ModelNotFound:
                document = self.core.pipeline(request.name).metadata
        except FastServeError as exc:
            await _abort(context, exc)
        if counters is not None:  # OVMS counts successes only here: a failed lookup has no series
            counters.meta_ok += 1
        return metadata_message(orjson.loads(document))

    async def model_infer(self, body: bytes, context: Any) -> bytes:
        quota = self.quota
        size = len(body)
        if quota.used + size > quota.limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, quota.refusal(size))
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:  # waited (in grpcio's queue, or arriving) past the deadline
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        quota.used += size
        trace = None if self.metrics is None else Trace()
        started = perf_counter()
        try:
            split = split_raw(body)  # a large message gathered from reads: its tensors as views of it
            message = parse_request(body if split is None else split[0])
            core = self.core
            target = core.target(message.model_name, parse_version(message.model_version))
            core.admit(target)
            outcome = core.infer(target, decode_request(message, None if split is None else split[1]), trace)
            if type(outcome) is not Outcome:
                outcome = await self._wait(outcome, trace)  # a cancelled call cancels this wait
            if outcome.result is None:  # type: ignore[union-attr]
                await context.abort(grpc.StatusCode.ABORTED, NO_RESULTS)
            response = encode_outcome(outcome)  # type: ignore[arg-type]
            if trace is not None and trace.target is not None:
                self._counters(trace).succeeded_grpc((perf_counter() - started) * 1e6, trace.wait_us, trace.infer_us)
            return response
        except FastServeError as exc:
            if trace is not None and trace.target is not None:
                self._counters(trace).grpc.infer_fail += 1
            await _abort(context, exc)
        except NotAMessage as exc:
            await context.abort(grpc.StatusCode.INTERNAL, str(exc))
        except ABORTS:  # either transport's abort: already an answer
            raise
        except Exception:  # a bug of ours: logged, and the client still gets an answer
            log.exception("ModelInfer failed")
            await context.abort(grpc.StatusCode.INTERNAL, "Internal server error")
        finally:
            quota.used -= size
        raise AssertionError("unreachable: abort raises")

    async def _wait(self, pending: Awaitable[Outcome], trace: Trace | None) -> Outcome:
        counters = self._counters(trace) if trace is not None and trace.target is not None else None
        if counters is None:
            return await pending
        counters.current += 1
        try:
            return await pending
        finally:
            counters.current -= 1

    def _counters(self, trace: Trace) -> ModelMetrics:
        assert self.metrics is not None
        return self.metrics.model(trace.target.name, trace.target.version)


def metadata_message(doc: dict[str, Any]) -> pb.ModelMetadataResponse:
    """The REST metadata document (OVMS's fields) as ModelMetadataResponse."""
    response = pb.ModelMetadataResponse(name=doc["name"], versions=doc["versions"], platform=doc["platform"])
    for field in ("inputs", "outputs"):
        described = getattr(response, field)
        for tensor in doc[field]:
            described.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    return response


async def _abort(context: Any, exc: FastServeError) -> None:
    code, message = grpc_status(exc)
    await context.abort(code, message)
