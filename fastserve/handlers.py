"""One function per endpoint; `App.handle` routes a Request to it.

Rules: the only module that knows HTTP requests, the v2 codec and the repository together.
Handlers return a Response, or an awaitable of one when inference has to wait: health and
metadata never create a task. Errors are raised as FastServeErrors and rendered by the
protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson

from fastserve import SERVER_NAME, __version__
from fastserve.core.inference import InferenceCore, Outcome
from fastserve.core.trace import Trace
from fastserve.errors import FastServeError, ModelNotFound, NotFound, Unavailable
from fastserve.http.compression import Codings
from fastserve.http.request import Request
from fastserve.http.response import OCTET_STREAM, Response
from fastserve.models.repository import Repository
from fastserve.router import Route, match
from fastserve.settings import ServerSettings
from fastserve.triton.documents import config_document, stats_document
from fastserve.v2.decode import decode_request, parse_header_length
from fastserve.v2.encode import encode_selected

if TYPE_CHECKING:
    from fastserve.metrics import Metrics
    from fastserve.reload import Reloader

# What this server really implements, for GET /v2 (OVMS sends none; Triton lists its own, and
# these are its names: docs/protocol/extension_model_configuration.md, extension_statistics.md).
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]

Handler = Callable[[Request, Route], "Response | Awaitable[Response]"]
_OK = Response.fixed(200)
# Routes already matched, by (method, raw URL): clients repeat a few URLs, and router.match
# (split, percent-decode, tuple lookups) costs ~4 us where this dict lookup costs ~0.2 us, about
# a third of a health check's Python time. Bounded: endless distinct URLs only restart the cache.
ROUTE_CACHE_SIZE = 1024
# Health bodies as KServe's Python server and SDK have them (its InferenceRESTClient reads
# response.json()["live"] / ["ready"]); OVMS sends none, and its samples, tritonclient and curl
# read only the status, which stays OVMS's: 200, or 503 while the first load runs.
_LIVE = Response.fixed(200, b'{"live":true}')
_READY = Response.fixed(200, b'{"ready":true}')
_NOT_READY = Response.fixed(503, b'{"ready":false}')


class App:
    def __init__(self, settings: ServerSettings, repository: Repository) -> None:
        self.settings = settings
        self.repository = repository
        self.core = InferenceCore(repository)
        self.route_cache: dict[tuple[bytes, bytes], tuple[Handler, Route]] = {}
        self.server_metadata = orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})
        self.routes: dict[str, Handler] = {
            "live": self.live,
            "ready": self.ready,
            "server_metadata": self.metadata,
            "model_metadata": self.model_metadata,
            "model_ready": self.model_ready,
            "infer": self.infer,
            "options": self.options,
            "metrics": self.not_enabled,
            "config": self.config_status,
            "config_reload": self.config_reload,
            "model_config": self.model_config,
            "model_stats": self.model_stats,
        }
        # Bodyless GETs whose answer is a fixed Response, by raw URL: the protocol writes its prebuilt
        # wire form (health checks, ~1 us less each). Emptied when CORS adds headers to every response.
        self.quick: dict[bytes, Callable[[], Response]] = {
            b"/v2/health/live": lambda: _LIVE,
            b"/v2/health/ready": lambda: _READY if self.repository.ready else _NOT_READY,
        }
        # Hot reload (fastserve/reload.py), set by the server: /v1/config and /v1/config/reload.
        self.reloader: Reloader | None = None
        # Header lines added to every response, by request (CORS); None: nothing to add.
        self.extra_headers: Callable[[Request | None], bytes] | None = None
        # Operations features (docs/operations.md); each costs nothing per request when off.
        self.codings = Codings(settings.max_decompressed_size, settings.compression_min_size)
        self.metrics: Metrics | None = None  # shared with the gRPC service, which counts its calls there
        if settings.metrics_enable or settings.server_timing:
            from fastserve.observe import install

            self.metrics = install(self.routes, repository, settings).metrics
        if settings.allowed_origins:
            from fastserve.cors import Cors

            self.quick = {}
            self.extra_headers = Cors(
                settings.allowed_origins, settings.allowed_methods, settings.allowed_headers,
                settings.allow_credentials,
            )

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        cached = self.route_cache.get((request.method, request.url))
        if cached is None:
            route = match(request.method, request.url)  # raises for bad URLs, which are never cached
            if len(self.route_cache) >= ROUTE_CACHE_SIZE:
                self.route_cache.clear()
            cached = self.route_cache[(request.method, request.url)] = (self.routes[route.name], route)
        handler, route = cached
        headers = request.headers
        if b"content-encoding" in headers or b"accept-encoding" in headers:
            return self.codings.apply(handler, request, route)  # gzip/deflate in or out
        return handler(request, route)

    # Server endpoints

    def live(self, request: Request, route: Route) -> Response:
        return _LIVE

    def ready(self, request: Request, route: Route) -> Response:
        return _READY if self.repository.ready else _NOT_READY

    def metadata(self, request: Request, route: Route) -> Response:
        return Response(200, self.server_metadata)

    def options(self, request: Request, route: Route) -> Response:
        return Response(204, headers=((b"allow", route.allow),))

    def not_enabled(self, request: Request, route: Route) -> Response:
        raise NotFound("Invalid request URL")

    # OVMS config API: status of every model version, and a reload on demand

    def config_status(self, request: Request, route: Route) -> Response:
        if self.reloader is None:
            raise NotFound("Invalid request URL")
        return Response(200, self.reloader.status_body())

    async def config_reload(self, request: Request, route: Route) -> Response:
        if self.reloader is None:
            raise NotFound("Invalid request URL")
        if not self.repository.ready:
            raise Unavailable("Server is not ready")  # the first load is still running
        change = await self.reloader.reload()
        if change.error is not None:  # OVMS's text: the details are in the log
            raise FastServeError(change.error.message, change.error.status)
        return Response(201 if change.changed else 200, self.reloader.status_body())

    # Model endpoints

    def model_metadata(self, request: Request, route: Route) -> Response:
        assert route.model is not None
        try:
            return Response(200, self.repository.metadata(route.model, route.version))
        except ModelNotFound:  # OVMS's lookup order: a model, then a pipeline (whose version is ignored)
            return Response(200, self.core.pipeline(route.model).metadata)

    def model_ready(self, request: Request, route: Route) -> Response:
        assert route.model is not None
        try:
            try:
                self.repository.get(route.model, route.version)
            except ModelNotFound:
                self.core.pipeline(route.model)
        except Unavailable as exc:
            # The spec wants a 4xx for "not ready"; OVMS answers 404 with this text.
            raise NotFound(exc.message) from None
        return _OK

    # Triton's extensions (fastserve/triton/): documents built on demand, never on the infer path

    def model_config(self, request: Request, route: Route) -> Response:
        assert route.model is not None
        return Response(200, orjson.dumps(config_document(self.core, route.model, route.version)))

    def model_stats(self, request: Request, route: Route) -> Response:
        return Response(200, orjson.dumps(stats_document(self.core, route.model, route.version)))

    def infer(self, request: Request, route: Route, trace: Trace | None = None) -> Response | Awaitable[Response]:
        assert route.model is not None
        core = self.core
        target = core.target(route.model, route.version)
        if target.inline:
            core.admit(target)  # the loop's queue (core/admission.py): a 503 before any decoding
        body = request.body
        header = request.headers.get(b"inference-header-content-length")
        fast = target.fast_json if header is None else None
        prepared = fast(body) if fast is not None else None
        if prepared is not None:  # the common JSON request, decoded and bound in one pass
            outcome = core.infer(target, prepared[0], trace, prepared[1])
        else:
            outcome = core.infer(target, decode_request(body, parse_header_length(header, len(body))), trace)
        if type(outcome) is Outcome:
            return respond(outcome)
        return _respond_later(outcome)  # type: ignore[arg-type]


async def _respond_later(pending: Awaitable[Outcome]) -> Response:
    return respond(await pending)


def respond(outcome: Outcome) -> Response:
    """The REST encoding of an outcome: JSON, with binary parts sent straight from tensor memory."""
    result = outcome.result
    if result is None:
        return Response(204)  # a demultiplexer found nothing: OVMS's 204 No Content
    try:
        target = outcome.target
        every = target.every_json  # every output as JSON, the common case: its bytes prebuilt at load time
        if every is not None and outcome.selected is every.selected:
            head = every(outcome.decoded.id, result.arrays)
        else:
            head = None
        if head is not None:
            result.release()  # the JSON bytes are our own: the infer request can go back now
            return Response(200, head)
        encoded = encode_selected(target.name, target.version_text, outcome.decoded, outcome.selected, result.arrays)
    except BaseException:
        result.release()
        raise
    if not encoded.parts:
        result.release()  # the JSON bytes are our own: the infer request can go back now
        return Response(200, encoded.head)
    return Response(
        200,
        encoded.head,
        OCTET_STREAM,
        parts=encoded.parts,
        headers=((b"inference-header-content-length", b"%d" % encoded.header_length),),  # type: ignore[str-bytes-safe]
        on_sent=result.release,  # binary parts are views of the request's output memory
    )
