"""grpc/rawsplit.py against protobuf's own parse: the same inputs and raw contents, in any field
order and with unknown fields; None (the caller parses whole) for anything it does not walk."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fastserve.grpc.proto.inference_pb2 import ModelInferRequest
from fastserve.grpc.rawsplit import SPLIT_FROM, split_raw


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name: str, shape: list[int]) -> bytes:
    tensor = ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=shape)
    return tensor.SerializeToString()


UNKNOWN = [_varint(99 << 3 | 0) + _varint(300), _varint(98 << 3 | 1) + bytes(8), _varint(97 << 3 | 5) + bytes(4),
           _field(96, b"unknown bytes")]


def _message(seed: int) -> tuple[bytearray, list[bytes]]:
    rng = random.Random(seed)
    raws = [np.random.default_rng(seed + i).standard_normal(20_000 + 1000 * i).astype(np.float32).tobytes()
            for i in range(3)]
    pieces = [_field(1, b"model"), _field(3, b"request-id"), *(_field(7, raw) for raw in raws),
              *(_field(5, _tensor(f"in{i}", [1, len(raw) // 4])) for i, raw in enumerate(raws)), *UNKNOWN]
    rng.shuffle(pieces)
    # protobuf keeps repeated fields in the order they appear: the raw entries' order is what we compare
    return bytearray(b"".join(pieces)), raws


@pytest.mark.parametrize("seed", range(8))
def test_the_split_parses_as_protobuf_does(seed: int) -> None:
    body, _ = _message(seed)
    whole = ModelInferRequest.FromString(bytes(body))
    split = split_raw(body)
    assert split is not None
    rest, views = split
    part = ModelInferRequest.FromString(rest)
    assert not part.raw_input_contents
    assert [bytes(v) for v in views] == list(whole.raw_input_contents)
    assert part.model_name == whole.model_name and part.id == whole.id
    assert list(part.inputs) == list(whole.inputs)
    assert all(not v.readonly for v in views)  # writable: OpenVINO may share them
    views[0][0] ^= 0xFF  # and they are the message's own memory, not copies
    assert body.count(bytes(views[0])) == 1


def test_small_read_only_or_raw_free_messages_are_left_to_protobuf() -> None:
    body, _ = _message(1)
    assert split_raw(bytes(body)) is None  # read-only: sharing would be refused anyway
    assert split_raw(memoryview(body)) is None
    assert split_raw(bytearray(_field(1, b"m") + _field(7, bytes(100)))) is None  # under SPLIT_FROM
    assert split_raw(bytearray(_field(1, b"m" * SPLIT_FROM))) is None  # no raw_input_contents


@pytest.mark.parametrize("tail", [
    b"\x80",  # a tag cut short
    _varint(7 << 3 | 2) + b"\xff",  # a length cut short
    _varint(7 << 3 | 2) + _varint(10),  # a length beyond the end
    _varint(5 << 3 | 3),  # a group (wire type 3)
    _varint(5 << 3 | 6),  # no such wire type
    _varint(9 << 3 | 1) + bytes(3),  # a fixed64 cut short
])
def test_anything_unusual_falls_back_to_protobuf(tail: bytes) -> None:
    body, _ = _message(2)
    assert split_raw(body + tail) is None
