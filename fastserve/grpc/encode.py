"""The core's Outcome -> ModelInferResponse bytes, outputs in raw_output_contents as OVMS sends them.

Protobuf serializes only the small part (names, datatypes, shapes); each output's bytes are
appended as a length-delimited field 6 written here, straight from the tensor's memory. A
message is the concatenation of its fields, so head + fields is the whole ModelInferResponse,
and the one b"".join is the only copy of the output data (grpcio needs one bytes object).
"""

from __future__ import annotations

from typing import Any

from fastserve.core.inference import Outcome
from fastserve.grpc.proto.inference_pb2 import ModelInferResponse
from fastserve.v2.encode import binary_buffer, datatype_name

_RAW_OUTPUT_TAG = b"\x32"  # field 6 (raw_output_contents), wire type 2 (length-delimited)


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_outcome(outcome: Outcome) -> bytes:
    """The response message; releases the outcome's result (its memory is copied by then)."""
    result = outcome.result
    assert result is not None  # no results is ABORTED, answered before encoding
    try:
        target = outcome.target
        response = ModelInferResponse(model_name=target.name, model_version=target.version_text,
                                      id=outcome.decoded.id or "")
        described = response.outputs
        pieces: list[Any] = [b""]
        for (spec, _), array in zip(outcome.selected, result.arrays, strict=True):
            described.add(name=spec.name, datatype=datatype_name(spec, array), shape=array.shape)
            data = binary_buffer(spec, array)
            pieces.append(_RAW_OUTPUT_TAG + varint(data.nbytes))
            pieces.append(data)
        pieces[0] = response.SerializeToString()
        return b"".join(pieces)
    finally:
        result.release()
