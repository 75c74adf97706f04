"""FastServeErrors as gRPC status codes: the one place that maps them (REST's is the HTTP status).

The codes are OVMS's (src/grpc_utils.cpp maps each OVMS status to one) and the messages the
same texts REST sends: a bad request is INVALID_ARGUMENT, an unknown model or version
NOT_FOUND, a version still loading UNAVAILABLE, a demultiplexer with nothing to send ABORTED,
a full queue RESOURCE_EXHAUSTED (OVMS has no queue; that is gRPC's code for it), and a failed
inference INTERNAL.
"""

from __future__ import annotations

import grpc

from fastserve.errors import FastServeError, Overloaded
from fastserve.pipelines.results import NoResults

# OVMS's text for PIPELINE_DEMULTIPLEXER_NO_RESULTS (REST answers 204 No Content instead).
NO_RESULTS = "Pipeline execution aborted due to no content from custom node"
# OVMS's text for MODEL_VERSION_INVALID_FORMAT.
INVALID_VERSION = "invalid model version format in request"

_BY_HTTP_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(exc: FastServeError) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, NoResults):
        return grpc.StatusCode.ABORTED, NO_RESULTS
    if isinstance(exc, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message
    return _BY_HTTP_STATUS.get(exc.status, grpc.StatusCode.INTERNAL), exc.message
