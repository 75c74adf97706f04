"""A 256 MiB binary tensor round trip through the zoo's `dynamic` model (y = 2x), with the
server's peak memory (VmHWM) checked against the tensor size.

The client streams the request from the array's own memory and reads the reply into one
preallocated buffer, so the test process stays lean too. The server's peak is its idle
footprint plus 3 tensor sizes: the request body (viewed in place and shared with OpenVINO),
the output tensor (sent as a view), and a transient one inside the CPU plugin: OpenVINO alone,
in-process, peaks at +2 x for one dynamic-shape y = 2x inference over a shared 256 MiB input
(+256 MiB kept as the output, +256 MiB freed again). One copy by fastserve anywhere on the
path (input into the request's own tensor, or of the output) would make it 4 x.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.serverproc import ServerProcess

MIB = 1 << 20
TENSOR_BYTES = 256 * MIB
ROWS = 64


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a process, in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


@pytest.fixture(scope="module")
def dynamic_server(zoo_config: Path) -> Iterator[ServerProcess]:
    model_path = zoo_config.parent / "dynamic"
    with ServerProcess("--model_name", "dynamic", "--model_path", str(model_path)) as proc:
        yield proc


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    while view:
        got = sock.recv_into(view)
        if not got:
            raise ConnectionError("closed early")
        view = view[got:]


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def test_256_mib_round_trip_with_bounded_memory(dynamic_server: ServerProcess) -> None:
    x = np.random.default_rng(3).random((ROWS, TENSOR_BYTES // 4 // ROWS), dtype=np.float32)
    assert x.nbytes == TENSOR_BYTES
    idle = vm_hwm(dynamic_server.proc.pid)
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                       "parameters": {"binary_data_size": x.nbytes}}],
           "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    header = json.dumps(doc).encode()
    head = (
        f"POST /v2/models/dynamic/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(header) + x.nbytes}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", dynamic_server.port), timeout=120) as sock:
        sock.sendall(head + header)
        sock.sendall(memoryview(x).cast("B"))
        status, headers, rest = read_head(sock)
        assert status == 200, rest[:300]
        body = bytearray(int(headers["content-length"]))
        body[: len(rest)] = rest
        recv_exact(sock, memoryview(body)[len(rest):])
    elapsed = time.perf_counter() - started
    json_length = int(headers["inference-header-content-length"])
    reply = json.loads(body[:json_length])
    assert reply["outputs"][0]["shape"] == list(x.shape)
    assert reply["outputs"][0]["parameters"]["binary_data_size"] == TENSOR_BYTES
    y = np.frombuffer(body, dtype=np.float32, offset=json_length).reshape(x.shape)
    np.testing.assert_array_equal(y, 2 * x)
    peak = vm_hwm(dynamic_server.proc.pid)
    grown = peak - idle
    print(f"\n256 MiB round trip: {elapsed:.2f} s; server VmHWM idle {idle / MIB:.0f} MiB, "
          f"peak {peak / MIB:.0f} MiB (+{grown / MIB:.0f} MiB = {grown / TENSOR_BYTES:.2f} x tensor)")
    assert grown < 3.5 * TENSOR_BYTES
    # And the server is still well.
    with socket.create_connection(("127.0.0.1", dynamic_server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(sock)[0] == 200


def infer_request(x: np.ndarray) -> bytes:
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape)}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    return (
        f"POST /v2/models/dynamic/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(header) + x.nbytes}\r\n\r\n"
    ).encode() + header + x.tobytes()


def read_output(sock: socket.socket, shape: tuple[int, ...]) -> np.ndarray:
    status, headers, rest = read_head(sock)
    assert status == 200, rest[:300]
    body = bytearray(int(headers["content-length"]))
    body[: len(rest)] = rest
    recv_exact(sock, memoryview(body)[len(rest):])
    return np.frombuffer(body, dtype=np.float32, offset=int(headers["inference-header-content-length"])).reshape(shape)


def test_unread_response_keeps_its_infer_request(dynamic_server: ServerProcess) -> None:
    """A client that does not read leaves its 32 MiB output in the transport's buffer (write
    high-water 0 makes the server see that): its infer request must not serve anyone else until
    the bytes are gone, or the next inference of the same shape would overwrite them."""
    shape = (8, 1 << 20)
    held_x = np.full(shape, 1.5, dtype=np.float32)
    with socket.create_connection(("127.0.0.1", dynamic_server.port), timeout=60) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a small window: most bytes stay server-side
        slow.sendall(infer_request(held_x))
        assert slow.recv(1, socket.MSG_PEEK)  # the answer has begun: the rest waits in the server's buffer
        for value in (3.0, 5.0, 7.0, 9.0):  # the same shape again and again, on other connections
            x = np.full(shape, value, dtype=np.float32)
            with socket.create_connection(("127.0.0.1", dynamic_server.port), timeout=60) as fast:
                fast.sendall(infer_request(x))
                y = read_output(fast, shape)
                assert y[0, 0] == 2 * value and y[-1, -1] == 2 * value
        y = read_output(slow, shape)
    np.testing.assert_array_equal(y, 2 * held_x)
