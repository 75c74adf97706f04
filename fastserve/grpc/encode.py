"""The core's Outcome -> ModelInferResponse bytes, outputs in raw_output_contents as OVMS sends them.

Protobuf serializes only the small part (names, datatypes, shapes); each output's bytes are
appended as a length-delimited field 6 written here, straight from the tensor's memory. A
message is the concatenation of its fields, in any order, so head + id + fields is the whole
ModelInferResponse, and the one b"".join is the only copy of the output data (grpcio needs one
bytes object). The head (model name, version, output descriptions) is the same for every
response of a model with the same output shapes: it is serialized once and kept (HEADS).
"""

from __future__ import annotations

from typing import Any

from fastserve.core.inference import Outcome
from fastserve.grpc.proto.inference_pb2 import ModelInferResponse
from fastserve.v2.encode import binary_buffer, datatype_name

_RAW_OUTPUT_TAG = b"\x32"  # field 6 (raw_output_contents), wire type 2 (length-delimited)
_ID_TAG = b"\x1a"  # field 3 (id), length-delimited
# Serialized heads by (target, (output name, datatype, shape)...); bounded, since dynamic shapes
# make new keys: past the bound it starts again (a cache miss costs one protobuf serialization).
HEADS: dict[tuple[Any, ...], bytes] = {}
MAX_HEADS = 512


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
        arrays = result.arrays
        outputs = tuple((spec.name, datatype_name(spec, array), array.shape)
                        for (spec, _), array in zip(outcome.selected, arrays, strict=True))
        key = (target.name, target.version_text, outputs)
        head = HEADS.get(key)
        if head is None:
            head = _head(target.name, target.version_text, outputs)
        request_id = outcome.decoded.id
        pieces: list[Any] = [head]
        if request_id:
            encoded = request_id.encode()
            pieces.append(_ID_TAG + varint(len(encoded)) + encoded)
        for (spec, _), array in zip(outcome.selected, arrays, strict=True):
            data = binary_buffer(spec, array)
            pieces.append(_RAW_OUTPUT_TAG + varint(data.nbytes))
            pieces.append(data)
        return b"".join(pieces)
    finally:
        result.release()


def _head(name: str, version: str, outputs: tuple[tuple[str, str, tuple[int, ...]], ...]) -> bytes:
    response = ModelInferResponse(model_name=name, model_version=version)
    for output, datatype, shape in outputs:
        response.outputs.add(name=output, datatype=datatype, shape=shape)
    head = response.SerializeToString()
    if len(HEADS) >= MAX_HEADS:
        HEADS.clear()
    HEADS[(name, version, outputs)] = head
    return head
