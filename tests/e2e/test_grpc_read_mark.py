"""The h2 transport's read mark (fastserve/grpc/h2/readmark.py): SO_RCVLOWAT while a large DATA
frame's rest is on its way must never hold back a byte the server needs.

A raw client (tests/h2client.py builds the frames) sends them in pieces it holds back itself:
one large frame's rest together with the start of a second, smaller one, and a frame in small
bursts. A mark above what the frame being received still lacks would leave a call unanswered
(the test then times out). How the kernel splits the bursts into reads is its own (it also
wakes the reader early when the receive window runs low), so the exact sequence of marks is
checked on a real socket by the unit part: a new, smaller frame lowers the mark.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fastserve.grpc.h2.readmark import FROM_BYTES, ReadMark
from fastserve.grpc.proto.inference_pb2 import ModelInferResponse
from tests.grpcstub import infer_request, output_arrays
from tests.h2client import RawH2, grpc_frame
from tests.opsrepo import write_ops_repository
from tests.serverproc import ServerProcess

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = write_ops_repository(tmp_path_factory.mktemp("read_mark"), ("dynamic",))
    with ServerProcess("--config_path", str(config), grpc=True, grpc_transport="h2") as proc:
        yield proc


def _body(values: int, start: float) -> tuple[np.ndarray, bytes]:
    x = (np.arange(values, dtype=np.float32) + start).reshape(1, -1)
    return x, grpc_frame(infer_request("dynamic", {"x": ("FP32", x)}).SerializeToString())


def _frames(client: RawH2, body: bytes) -> tuple[int, bytes]:
    """One call's HEADERS and its whole message in one DATA frame, as bytes not yet sent."""
    sid = client.request(INFER, None, end=False)  # headers only: they leave now
    deadline = time.monotonic() + 30
    while min(client.conn.local_flow_control_window(sid), client.conn.max_outbound_frame_size) < len(body):
        assert time.monotonic() < deadline, "the server's SETTINGS and windows never came"
        client.read()  # the server's SETTINGS and WINDOW_UPDATE: room for the frame
    client.conn.send_data(sid, body, end_stream=True)
    return sid, client.conn.data_to_send()


def _answer(client: RawH2, sid: int) -> np.ndarray:
    found = client.answer(sid)
    assert found["status"] == b"0", found
    return output_arrays(ModelInferResponse.FromString(found["data"][5:]))["y"]


def test_a_smaller_frame_after_a_larger_one_in_the_same_read_is_not_held_back(server: ServerProcess) -> None:
    client = RawH2("127.0.0.1", server.grpc_port)
    try:
        first, first_body = _body(75_000, 0.0)  # 300 KB
        second, second_body = _body(37_500, 1.0)  # 150 KB
        sid1, frames1 = _frames(client, first_body)
        sid2, frames2 = _frames(client, second_body)
        assert len(frames1) > 3 * FROM_BYTES and len(frames2) > 2 * FROM_BYTES
        client.sock.sendall(frames1[:70_000])  # the server now waits for the first frame's rest
        time.sleep(0.2)  # lets it read this piece alone (not needed for the answer, only for the case)
        client.sock.sendall(frames1[70_000:] + frames2[:70_000])  # its rest, and the second frame's start
        time.sleep(0.2)
        client.sock.sendall(frames2[70_000:])  # less than the first frame's mark was
        np.testing.assert_array_equal(_answer(client, sid1), first * 2)
        np.testing.assert_array_equal(_answer(client, sid2), second * 2)
    finally:
        client.close()


def test_a_large_frame_sent_a_few_bytes_at_a_time_is_answered(server: ServerProcess) -> None:
    client = RawH2("127.0.0.1", server.grpc_port)
    try:
        x, body = _body(50_000, 3.0)  # 200 KB
        sid, frames = _frames(client, body)
        for at in range(0, len(frames), 40_000):  # bursts smaller than the frame's rest, one by one
            client.sock.sendall(frames[at:at + 40_000])
            time.sleep(0.02)
        np.testing.assert_array_equal(_answer(client, sid), x * 2)
        small, small_body = _body(4, 9.0)  # and a small call after it still answers at once
        np.testing.assert_array_equal(_answer(client, client.request(INFER, small_body)), small * 2)
    finally:
        client.close()


def test_the_mark_follows_the_frame_on_a_real_socket() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()

    class Transport:
        def get_extra_info(self, name: str) -> object:
            return accepted if name == "socket" else None

    def level() -> int:
        return accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

    try:
        mark = ReadMark(Transport())
        mark.follow(230_000)
        assert level() == 230_000
        mark.follow(80_000)  # a new, smaller frame: the mark comes down with it
        assert level() == 80_000
        mark.follow(FROM_BYTES - 1)  # a small rest: back to the first byte
        assert level() == 1
        mark.follow(0)
        assert level() == 1
    finally:
        for sock in (peer, accepted, listener):
            sock.close()


def test_a_transport_without_a_socket_is_left_alone() -> None:
    class Transport:
        def get_extra_info(self, name: str) -> object:
            return None

    mark = ReadMark(Transport())
    mark.follow(1 << 20)  # nothing to set: no error
    assert mark.level == 1
