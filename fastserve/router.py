"""The fixed route table of the KServe v2 REST API (plus OVMS's /v1/config and /metrics).

Rules: pure: (method, raw URL) -> (route name, model, version), or a FastServeError
(404 unknown path, 405 wrong method with Allow, 400 bad URL). The path is split on "/"
and matched as a tuple: no regex per request. Knows no handlers, no models.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote

from fastserve.errors import BadRequest, MethodNotAllowed, NotFound

GET = (b"GET", b"HEAD")
POST = (b"POST",)
# Versions longer than this cannot exist (int64); they are simply not found, as in OVMS.
MAX_VERSION_DIGITS = 18


class Route(NamedTuple):
    name: str
    model: str | None = None
    version: int | None = None
    allow: bytes = b""  # for OPTIONS: the methods the path takes


_STATIC: dict[tuple[str, ...], tuple[str, tuple[bytes, ...]]] = {
    ("v2",): ("server_metadata", GET),
    ("v2", "health", "live"): ("live", GET),
    ("v2", "health", "ready"): ("ready", GET),
    ("metrics",): ("metrics", GET),
    ("v1", "config"): ("config", GET),
    ("v1", "config", "reload"): ("config_reload", POST),
}
# After /v2/models/{name}[/versions/{v}]: the endpoint suffix -> route and methods.
_MODEL_SUFFIX: dict[tuple[str, ...], tuple[str, tuple[bytes, ...]]] = {
    (): ("model_metadata", GET),
    ("ready",): ("model_ready", GET),
    ("infer",): ("infer", POST),
}


def allow_header(methods: tuple[bytes, ...]) -> bytes:
    return b", ".join((*methods, b"OPTIONS"))


def split_path(url: bytes) -> tuple[str, ...]:
    """Path segments without empty ones (so // collapses); '.' and '..' segments are refused."""
    path = url.split(b"?", 1)[0].split(b"#", 1)[0]
    try:
        text = path.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("Invalid request URL: non-ASCII bytes in the path") from None
    segments = tuple(unquote(s) for s in text.split("/") if s)
    if any(s in (".", "..") for s in segments):
        raise BadRequest("Invalid request URL: '.' and '..' path segments are not allowed")
    return segments


def match(method: bytes, url: bytes) -> Route:
    segments = split_path(url)
    found = _STATIC.get(segments)
    if found is not None:
        return _check(method, found, Route(found[0]))
    if len(segments) >= 3 and segments[0] == "v2" and segments[1] == "models":
        name, rest = segments[2], segments[3:]
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version = _version(rest[1])
            rest = rest[2:]
        found = _MODEL_SUFFIX.get(rest)
        if found is not None:
            return _check(method, found, Route(found[0], name, version))
    raise NotFound("Invalid request URL")


def _check(method: bytes, found: tuple[str, tuple[bytes, ...]], route: Route) -> Route:
    if method in found[1]:
        return route
    if method == b"OPTIONS":
        return Route("options", allow=allow_header(found[1]))
    raise MethodNotAllowed(allow_header(found[1]))


def _version(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise BadRequest(f"Invalid request URL: model version {text!r} is not a number")
    if len(text) > MAX_VERSION_DIGITS:
        return -1  # never served: answered 404 by the lookup
    return int(text)
