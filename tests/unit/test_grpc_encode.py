"""grpc/encode.py: the hand-assembled ModelInferResponse parses to exactly the message protobuf
would build from the same outcome (names, version, id, output descriptions, raw bytes), the
head cache gives the same bytes on a hit, and the result is released once encoded."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fastserve.grpc import encode
from fastserve.grpc.proto.inference_pb2 import ModelInferResponse
from fastserve.v2.datatypes import BY_NAME, BYTES
from fastserve.v2.types import TensorSpec


class Result:
    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.released = 0

    def release(self) -> None:
        self.released += 1


def outcome(arrays: dict[str, tuple[str, np.ndarray]], request_id: str | None, name: str = "m") -> Any:
    specs = [(TensorSpec(n, BY_NAME[d], d.lower(), None, i), True) for i, (n, (d, _)) in enumerate(arrays.items())]
    result = Result([a for _, a in arrays.values()])
    return SimpleNamespace(target=SimpleNamespace(name=name, version_text="3"),
                           decoded=SimpleNamespace(id=request_id), selected=specs, result=result)


def expected(found: Any) -> ModelInferResponse:
    response = ModelInferResponse(model_name=found.target.name, model_version="3", id=found.decoded.id or "")
    for (spec, _), array in zip(found.selected, found.result.arrays, strict=True):
        response.outputs.add(name=spec.name, datatype=spec.datatype.name, shape=array.shape)
        if spec.datatype is BYTES:
            response.raw_output_contents.append(b"".join(len(v).to_bytes(4, "little") + v for v in array.ravel()))
        else:
            response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
    return response


@pytest.mark.parametrize("request_id", [None, "", "7", "é-" * 100])
def test_matches_protobufs_own_message(request_id: str | None) -> None:
    encode.HEADS.clear()
    arrays = {"sum": ("FP32", np.arange(300, dtype=np.float32).reshape(3, 100)),
              "mask": ("BOOL", np.array([[True, False]])),
              "text": ("BYTES", np.array([b"a", b"\x00bc"], dtype=object)),
              "strided": ("INT64", np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2])}
    for _ in range(2):  # a miss, then a hit on the cached head
        found = outcome(arrays, request_id)
        body = encode.encode_outcome(found)
        assert ModelInferResponse.FromString(body) == expected(found)
        assert found.result.released == 1
    assert len(encode.HEADS) == 1


def test_shapes_models_and_the_bound_make_new_heads() -> None:
    encode.HEADS.clear()
    for rows in range(1, 4):
        for name in ("a", "b"):
            found = outcome({"y": ("FP32", np.zeros((rows, 2), np.float32))}, None, name)
            assert ModelInferResponse.FromString(encode.encode_outcome(found)) == expected(found)
    assert len(encode.HEADS) == 6
    encode.HEADS.update({("x", str(i), ()): b"" for i in range(encode.MAX_HEADS)})
    found = outcome({"y": ("FP32", np.zeros((9, 2), np.float32))}, None)
    assert ModelInferResponse.FromString(encode.encode_outcome(found)) == expected(found)
    assert len(encode.HEADS) == 1  # cleared at the bound, then the new head
