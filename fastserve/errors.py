"""One error base that carries an HTTP status.

Rules: anything below the HTTP layer raises a FastServeError (or a subclass); the protocol
renders it once, as `{"error": message}`. This module knows no transport and no models.
"""

from __future__ import annotations

import orjson


class FastServeError(Exception):
    """An error with the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, status: int | None = None, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers

    def body(self) -> bytes:
        return error_body(self.message)


class BadRequest(FastServeError):
    status = 400


class InvalidInput(BadRequest):
    """The request's tensors do not fit the model."""


class NotFound(FastServeError):
    status = 404


class ModelNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Model with requested name is not found")


class VersionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Model with requested version is not found")


class MethodNotAllowed(FastServeError):
    status = 405

    def __init__(self, allow: bytes) -> None:
        super().__init__("Unsupported method", headers=((b"allow", allow),))


class PayloadTooLarge(FastServeError):
    status = 413


class Unavailable(FastServeError):
    """Not ready yet, or overloaded: the client may retry."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers=((b"retry-after", str(retry_after).encode()),))


class Overloaded(Unavailable):
    """A full queue or a queue wait that ran out: 503 on REST, RESOURCE_EXHAUSTED on gRPC."""


class InferenceFailed(FastServeError):
    status = 500

    def __init__(self, detail: str = "") -> None:
        super().__init__("Internal inference error" + (f" - {detail}" if detail else ""))


class ConfigError(Exception):
    """A bad configuration: start-up stops with exit code 2 and this message."""


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
