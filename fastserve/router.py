"""The fixed route table of the KServe v2 REST API (plus OVMS's /v1/config and /metrics, and
Triton's model configuration and statistics extensions).

Rules: pure: (method, raw URL) -> (route name, model, version), or a FastServeError
(404 unknown path, 405 wrong method with Allow, 400 bad URL). The path is split on "/"
and matched as a tuple: no regex per request. Knows no handlers, no models.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from fastserve.errors import BadRequest, MethodNotAllowed, NotFound

GET = (b"GET", b"HEAD")
POST = (b"POST",)
# Versions above int64 cannot exist; they are simply not found, as in OVMS. The digit count is
# checked first so a 8 KiB run of digits never reaches int() (Python refuses > 4300 digits).
MAX_VERSION = (1 << 63) - 1
MAX_VERSION_DIGITS = 19


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
    # Triton's statistics extension for every model (so a model named "stats" has no metadata URL)
    ("v2", "models", "stats"): ("model_stats", GET),
}
# After /v2/models/{name}[/versions/{v}]: the endpoint suffix -> route and methods.
_MODEL_SUFFIX: dict[tuple[str, ...], tuple[str, tuple[bytes, ...]]] = {
    (): ("model_metadata", GET),
    ("ready",): ("model_ready", GET),
    ("infer",): ("infer", POST),
    ("config",): ("model_config", GET),  # Triton's model configuration extension
    ("stats",): ("model_stats", GET),  # Triton's statistics extension
}


def allow_header(methods: tuple[bytes, ...]) -> bytes:
    return b", ".join((*methods, b"OPTIONS"))


ALLOW_ANY = allow_header(GET + POST)


def split_path(url: bytes) -> tuple[str, ...]:
    """Decoded path segments without empty ones (so // collapses); '.' and '..' segments are refused.

    The query and fragment are ignored; an absolute-form target (http://host/path, RFC 9112
    3.2.2) is reduced to its path. Segments are percent-decoded after splitting, so %2F stays
    inside a segment.
    """
    path = url.split(b"?", 1)[0].split(b"#", 1)[0]
    if not path.startswith(b"/"):
        scheme, sep, rest = path.partition(b"://")
        if sep and scheme.lower() in (b"http", b"https"):
            path = b"/" + rest.partition(b"/")[2]
    segments = []
    for raw in path.split(b"/"):
        if not raw:
            continue
        if not raw.isascii():
            raise BadRequest("Invalid request URL: non-ASCII bytes must be percent-encoded")
        try:
            segment = unquote_to_bytes(raw).decode("utf-8") if b"%" in raw else raw.decode("ascii")
        except UnicodeDecodeError:
            raise BadRequest("Invalid request URL: the percent-encoded path is not UTF-8") from None
        if segment == "." or segment == "..":
            raise BadRequest("Invalid request URL: '.' and '..' path segments are not allowed")
        segments.append(segment)
    return tuple(segments)


def match(method: bytes, url: bytes) -> Route:
    if url == b"*":
        if method == b"OPTIONS":  # asterisk-form: the server as a whole (RFC 9110 9.3.7)
            return Route("options", allow=ALLOW_ANY)
        raise BadRequest("Invalid request URL: '*' is only for OPTIONS")
    segments = split_path(url)
    found = _STATIC.get(segments)
    if found is not None:
        return _check(method, found, Route(found[0]))
    if len(segments) >= 3 and segments[0] == "v2" and segments[1] == "models":
        name, rest = segments[2], segments[3:]
        version_text = None
        if len(rest) >= 2 and rest[0] == "versions":
            version_text, rest = rest[1], rest[2:]
        found = _MODEL_SUFFIX.get(rest)
        if found is not None:
            version = None if version_text is None else _version(version_text)
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
    digits = text.lstrip("0") or "0"
    if len(digits) > MAX_VERSION_DIGITS or int(digits) > MAX_VERSION:
        return -1  # never served: answered 404 by the lookup, as OVMS does for an int64 overflow
    return int(digits)
