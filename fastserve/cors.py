"""CORS response headers, only when --allowed_origins is given.

Rules: turns the request's Origin (and, for a preflight, its Access-Control-Request-*
headers) into header bytes for App.extra_headers; knows nothing else. OVMS sends
`Access-Control-Allow-Origin: *` on every response by default; fastserve sends nothing unless
asked, so a local server is not readable by every web page the user happens to open.

- `*` without credentials: the same precomputed bytes for every response, no per-request work.
- A list of origins, or credentials: the request's Origin is echoed only when it is listed (or
  when `*` is configured), with `Vary: Origin` so caches keep the answers apart. Browsers refuse
  `*` together with credentials, which is why `*` is echoed as the origin in that case.
- A preflight (OPTIONS with Access-Control-Request-Method) also gets the allowed methods and
  headers and a max age; `*` in those is echoed back as the requested values when credentials
  are on (where `*` is not a wildcard for browsers).
"""

from __future__ import annotations

from fastserve.http.request import Request

# Browsers cache a preflight answer this many seconds (Chromium caps it at 7200, Firefox at 86400).
MAX_AGE_SECONDS = 600
# Headers a page's script may read cross-origin: the binary-extension framing and the timings.
EXPOSED = b"inference-header-content-length, server-timing"


def _token_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def check_header_value(flag: str, text: str) -> None:
    """ValueError for values that cannot go into a header (they come from the command line)."""
    if any(c in text for c in "\r\n\0") or not text.isascii():
        raise ValueError(f"{flag}: must be printable ASCII without line breaks")


class Cors:
    __slots__ = ("any_origin", "origins", "credentials", "methods", "headers", "common", "fixed", "preflight_fixed")

    def __init__(self, origins: str, methods: str = "*", headers: str = "*", credentials: bool = False) -> None:
        listed = _token_list(origins)
        self.any_origin = "*" in listed
        self.origins = frozenset(o.encode() for o in listed if o != "*")
        self.credentials = credentials
        self.methods = ", ".join(_token_list(methods)).encode() or b"*"
        self.headers = ", ".join(_token_list(headers)).encode() or b"*"
        common = b"access-control-expose-headers: %s\r\n" % EXPOSED
        if credentials:
            common += b"access-control-allow-credentials: true\r\n"
        self.common = common
        preflight = b"access-control-max-age: %d\r\n" % MAX_AGE_SECONDS
        # With "*" and no credentials every answer is the same: precompute it whole.
        self.fixed: bytes | None = None
        self.preflight_fixed: bytes | None = None
        if self.any_origin and not credentials:
            self.fixed = b"access-control-allow-origin: *\r\n" + common
            self.preflight_fixed = self.fixed + preflight + b"access-control-allow-methods: %s\r\n" % self.methods + (
                b"access-control-allow-headers: %s\r\n" % self.headers)

    def __call__(self, request: Request | None) -> bytes:
        """Header lines (each ending in CRLF) to add to the response to `request`."""
        if request is None:
            return self.fixed or b""
        preflight = request.method == b"OPTIONS" and b"access-control-request-method" in request.headers
        if self.fixed is not None:
            return self.preflight_fixed if preflight else self.fixed  # type: ignore[return-value]
        origin = request.headers.get(b"origin")
        if origin is None or not (self.any_origin or origin in self.origins):
            return b"vary: origin\r\n"
        out = b"access-control-allow-origin: %s\r\nvary: origin\r\n%s" % (origin, self.common)
        if preflight:
            methods, headers = self.methods, self.headers
            if self.credentials:
                if methods == b"*":
                    methods = request.headers.get(b"access-control-request-method", b"*")
                if headers == b"*":
                    headers = request.headers.get(b"access-control-request-headers", b"*")
            out += b"access-control-max-age: %d\r\naccess-control-allow-methods: %s\r\n" % (MAX_AGE_SECONDS, methods)
            out += b"access-control-allow-headers: %s\r\n" % headers
        return out
