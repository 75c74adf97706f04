"""Large raw_input_contents taken as views of the received message (fastserve/grpc/rawsplit.py),
end to end on both transports: the answers are those of protobuf's whole parse.

Messages over 300 KB arrive over several reads on the h2 transport (a read is at most 256 KB),
so the h2 server walks them; grpcio hands over `bytes`, which are parsed whole: both must give
the same answers and errors. The model (a + b, a - b on FP32 [-1,-1]) is built here. Messages
are put together field by field, in orders and with unknown fields no client library sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from tests.grpcstub import Stub, output_arrays
from tests.modelzoo import save
from tests.serverproc import ServerProcess
from tests.unit.test_rawsplit import UNKNOWN, _field, _tensor

VALUES = 100_000  # 400 KB per input


def _add2() -> ov.Model:
    a = ops.parameter([-1, -1], ov.Type.f32, name="a")
    b = ops.parameter([-1, -1], ov.Type.f32, name="b")
    total, diff = ops.add(a, b), ops.subtract(a, b)
    total.output(0).get_tensor().set_names({"sum"})
    diff.output(0).get_tensor().set_names({"diff"})
    return ov.Model([ops.result(total), ops.result(diff)], [a, b], "add2")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, grpc_transport: str) -> Iterator[ServerProcess]:
    base: Path = tmp_path_factory.mktemp("raw_views") / "add2"
    save(_add2(), base)
    with ServerProcess("--model_name", "add2", "--model_path", str(base), grpc=True,
                       grpc_transport=grpc_transport) as proc:
        yield proc


@pytest.fixture()
def stub(server: ServerProcess) -> Iterator[Stub]:
    client = Stub(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


def _arrays(seed: int, values: int = VALUES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, values), dtype=np.float32), rng.standard_normal((1, values), dtype=np.float32))


def _body(a: np.ndarray, b: np.ndarray, raw_first: bool = False, unknown: bool = False) -> bytes:
    head = [_field(1, b"add2"), _field(5, _tensor("a", list(a.shape))), _field(5, _tensor("b", list(b.shape)))]
    raws = [_field(7, a.tobytes()), _field(7, b.tobytes())]
    pieces = raws + head if raw_first else head + raws
    if unknown:
        pieces = [item for i, piece in enumerate(pieces) for item in (UNKNOWN[i % len(UNKNOWN)], piece)]
    return b"".join(pieces)


def _check(stub: Stub, body: bytes, a: np.ndarray, b: np.ndarray) -> None:
    outputs = output_arrays(stub.call("ModelInfer", body))
    np.testing.assert_array_equal(outputs["sum"], a + b)
    np.testing.assert_array_equal(outputs["diff"], a - b)


@pytest.mark.parametrize("raw_first", [False, True])
@pytest.mark.parametrize("unknown", [False, True])
def test_large_tensors_in_any_field_order_get_their_answers(stub: Stub, raw_first: bool, unknown: bool) -> None:
    a, b = _arrays(1)
    _check(stub, _body(a, b, raw_first, unknown), a, b)


def test_requests_after_large_shared_inputs_get_their_own_answers(stub: Stub) -> None:
    # The views are shared with OpenVINO: each request must compute on its own message, and a
    # small one after them on its own values (not on the last large one's memory).
    for seed in range(2, 6):
        a, b = _arrays(seed)
        _check(stub, _body(a, b), a, b)
    small_a, small_b = _arrays(9, values=4)
    _check(stub, _body(small_a, small_b), small_a, small_b)
    a, b = _arrays(10)
    _check(stub, _body(a, b, raw_first=True), a, b)


def test_a_raw_count_unlike_the_inputs_is_invalid_argument(stub: Stub) -> None:
    a, b = _arrays(3)
    code, details = stub.status("ModelInfer", _body(a, b) + _field(7, a.tobytes()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("Invalid message structure - Size of raw_input_contents: 3 is different than number of "
                       "inputs: 2")


def test_a_raw_size_unlike_the_shape_is_invalid_argument(stub: Stub) -> None:
    a, b = _arrays(4)
    body = b"".join([_field(1, b"add2"), _field(5, _tensor("a", [1, VALUES + 1])), _field(5, _tensor("b", [1, VALUES])),
                     _field(7, a.tobytes()), _field(7, b.tobytes())])
    code, details = stub.status("ModelInfer", body)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (f"Invalid content size of tensor proto - Expected: {(VALUES + 1) * 4} bytes; Actual: "
                       f"{VALUES * 4} bytes; input name: a")


def test_a_large_message_whose_last_field_is_cut_is_internal(stub: Stub) -> None:
    a, b = _arrays(5)
    body = _body(a, b)
    cut = body[:-5] + b"\x3a\xff\xff\x7f"  # ends in a raw field announcing far more than follows
    code, details = stub.status("ModelInfer", cut)
    assert code == grpc.StatusCode.INTERNAL
    assert "not a valid ModelInferRequest" in details
    _check(stub, body, a, b)  # the server goes on
