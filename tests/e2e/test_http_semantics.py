"""HTTP/1.1 semantics of the real server on 127.0.0.1, over raw sockets.

Three servers on a small repository (add, heavy, dynamic, and the pipelines "gated" and "held",
whose node holds each request until the test opens its gate: tests/gates.py), each started once
per module:
`srv` with a 4 MiB body limit, `strict` with 1 s header/body/keep-alive timeouts, and
`few` with --max_connections 4. Waits are kept to 1-2 s; the timeout sweep runs once a second.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.gates import Gate, assert_gated_ok, gated_request, gated_sections
from tests.modelzoo import add_model, dynamic_model, heavy_model, save
from tests.netstate import wait_read_by_server, wait_server_got_fin
from tests.rawhttp import Conn, Reply, build
from tests.serverproc import ServerProcess

MAX_BODY = 4 * 1024 * 1024
ADD_DOC = {"inputs": [
    {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
    {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10},
]}
ADD_BODY = json.dumps(ADD_DOC).encode()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Gate:
    return Gate(tmp_path_factory.mktemp("http_gate"))


@pytest.fixture(scope="module")
def half_gate(tmp_path_factory: pytest.TempPathFactory) -> Gate:
    return Gate(tmp_path_factory.mktemp("http_half_gate"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, gate: Gate, half_gate: Gate) -> Path:
    root = tmp_path_factory.mktemp("http_repo")
    for name, model in (("add", add_model()), ("heavy", heavy_model()), ("dynamic", dynamic_model())):
        save(model, root / name)
    config = root / "config.json"
    entries = [{"config": {"name": n, "base_path": n}} for n in ("add", "heavy", "dynamic")]
    config.write_text(json.dumps({"model_config_list": entries, **gated_sections(gated=gate, held=half_gate)}))
    return config


def _serve(repo: Path, *flags: str) -> Iterator[ServerProcess]:
    with ServerProcess("--config_path", str(repo), *flags) as proc:
        yield proc


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[ServerProcess]:
    yield from _serve(repo, "--max_request_size", str(MAX_BODY))


@pytest.fixture(scope="module")
def strict(repo: Path) -> Iterator[ServerProcess]:
    yield from _serve(repo, "--header_timeout", "1", "--body_timeout", "1", "--keep_alive_timeout", "1")


@pytest.fixture(scope="module")
def few(repo: Path) -> Iterator[ServerProcess]:
    yield from _serve(repo, "--max_connections", "4")


# Helpers


def read_to_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes; fails the test if it does not close in time."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def parse_all(data: bytes) -> list[Reply]:
    conn = Conn.__new__(Conn)
    conn.buffer = data
    conn.sock = None  # type: ignore[assignment]
    replies = []
    while conn.buffer:
        replies.append(conn.read())
    return replies


def heavy_body(batch: int) -> bytes:
    data = np.linspace(0, 1, batch * 3 * 64 * 64, dtype=np.float32).round(3).tolist()
    tensor = {"name": "x", "shape": [batch, 3, 64, 64], "datatype": "FP32", "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def binary_dynamic(count: int) -> tuple[bytes, dict[str, str]]:
    """A dynamic-model request with `count` FP32 values as binary input, asking for binary output."""
    tensor = {"name": "x", "shape": [1, count], "datatype": "FP32", "parameters": {"binary_data_size": count * 4}}
    head = json.dumps({"inputs": [tensor], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    body = head + np.arange(count, dtype=np.float32).tobytes()
    return body, {"Inference-Header-Content-Length": str(len(head))}


def rss_kib(proc: ServerProcess) -> int:
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(proc: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{proc.proc.pid}/fd"))


def wait_for(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def assert_error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.body)
    return reply.json()["error"]


def reset_close(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    sock.close()


# Keep-alive and close


def test_http11_keep_alive_until_connection_close(srv: ServerProcess) -> None:
    with Conn(srv.port) as conn:
        for _ in range(3):
            reply = conn.request("GET", "/v2/health/live")
            assert reply.status == 200 and "connection" not in reply.headers
        reply = conn.request("GET", "/v2/health/ready", headers={"Connection": "close"})
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert conn.closed_by_peer(3)


def test_http10_closes_unless_keep_alive(srv: ServerProcess) -> None:
    with srv.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        (reply,) = parse_all(read_to_eof(sock))
        assert reply.status == 200 and reply.headers["connection"] == "close"
    with Conn(srv.port) as conn:
        for _ in range(2):
            conn.send(b"GET /v2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reply = conn.read()
            assert reply.status == 200 and reply.headers["connection"] == "keep-alive"
            assert reply.json()["name"]


def test_request_after_connection_close_is_not_answered(srv: ServerProcess) -> None:
    with srv.connect() as sock:
        sock.sendall(build("GET", "/v2/health/live", headers={"Connection": "close"}) + build("GET", "/v2"))
        replies = parse_all(read_to_eof(sock))
    assert [r.status for r in replies] == [200]


def test_half_close_still_gets_every_answer(srv: ServerProcess, half_gate: Gate) -> None:
    # Both are sent and the write side shut while the first is held in the gate node: the server
    # has the EOF before it answers anything, so the last answer says it closes.
    with srv.connect() as sock:
        sock.sendall(gated_request("held") + build("GET", "/v2/health/live"))
        sock.shutdown(socket.SHUT_WR)
        half_gate.wait_entered(1)
        wait_server_got_fin(sock)
        half_gate.open()
        replies = parse_all(read_to_eof(sock))
    assert [r.status for r in replies] == [200, 200]
    assert_gated_ok(replies[0])
    assert replies[-1].headers["connection"] == "close"


# Pipelining


def test_pipelined_mix_is_answered_in_order(srv: ServerProcess) -> None:
    requests = [
        ("GET", "/v2/health/live", b""),
        ("POST", "/v2/models/heavy/infer", heavy_body(2)),  # async on the model's threads
        ("GET", "/v2/models/add", b""),
        ("POST", "/v2/models/heavy/infer", heavy_body(1)),
        ("POST", "/v2/models/add/infer", ADD_BODY),  # inline
        ("GET", "/v2/models/nope", b""),
        ("POST", "/v2/models/heavy/infer", heavy_body(3)),
        ("GET", "/v2", b""),
    ]
    with Conn(srv.port, timeout=30) as conn:
        conn.send(b"".join(build(m, p, b) for m, p, b in requests))
        replies = [conn.read() for _ in requests]
    assert [r.status for r in replies] == [200, 200, 200, 200, 200, 404, 200, 200]
    assert replies[0].json() == {"live": True}
    assert [o["shape"] for o in replies[1].json()["outputs"]] == [[2, 16]]
    assert replies[2].json()["name"] == "add"
    assert [o["shape"] for o in replies[3].json()["outputs"]] == [[1, 16]]
    assert replies[4].json()["model_name"] == "add"
    assert [o["shape"] for o in replies[6].json()["outputs"]] == [[3, 16]]
    assert "extensions" in replies[7].json()


def test_pipelined_requests_wait_for_a_running_one_and_keep_their_order(srv: ServerProcess, gate: Gate) -> None:
    # The first is held in the gate node until the test opens it: the fast ones behind it must
    # neither overtake it nor be lost, however fast this machine is.
    with Conn(srv.port, timeout=60) as conn:
        conn.send(gated_request() + build("POST", "/v2/models/add/infer", ADD_BODY) + build("GET", "/v2/health/live"))
        gate.wait_entered(1)
        wait_read_by_server([conn.sock])
        conn.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # nothing overtook the held request
            conn.sock.recv(1, socket.MSG_PEEK)
        conn.sock.settimeout(60)
        gate.open()
        replies = [conn.read() for _ in range(3)]
    assert_gated_ok(replies[0])
    assert replies[1].status == 200 and replies[1].json()["model_name"] == "add"
    assert replies[2].status == 200 and replies[2].json() == {"live": True}


# Bodies


def test_chunked_infer_gives_the_same_answer(srv: ServerProcess) -> None:
    with Conn(srv.port) as conn:
        plain = conn.request("POST", "/v2/models/add/infer", ADD_BODY)
        pieces = [ADD_BODY[i : i + 37] for i in range(0, len(ADD_BODY), 37)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        head = b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn.send(head + chunked[:50])
        time.sleep(0.05)
        conn.send(chunked[50:])
        reply = conn.read()
    assert plain.status == reply.status == 200
    assert reply.body == plain.body


def test_expect_100_continue(srv: ServerProcess) -> None:
    with Conn(srv.port) as conn:
        head = b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
        conn.send(head % len(ADD_BODY))
        assert conn.read().status == 100  # before any body byte was sent
        conn.send(ADD_BODY)
        reply = conn.read()
        assert reply.status == 200 and reply.json()["outputs"]
        assert conn.request("GET", "/v2/health/live").status == 200


def test_expect_100_continue_too_large_is_413_without_100(srv: ServerProcess) -> None:
    with srv.connect() as sock:
        sock.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Expect: 100-continue\r\n\r\n" % (MAX_BODY + 1))
        data = read_to_eof(sock)
    assert data.startswith(b"HTTP/1.1 413 ")
    (reply,) = parse_all(data)
    assert str(MAX_BODY) in assert_error(reply, 413) and reply.headers["connection"] == "close"


def test_content_length_over_limit_is_413_and_close(srv: ServerProcess) -> None:
    with srv.connect() as sock:
        sock.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
                     + b"x" * 65536)
        (reply,) = parse_all(read_to_eof(sock))
    assert_error(reply, 413)


def test_chunked_over_limit_is_413_and_close(srv: ServerProcess) -> None:
    chunk = b"x" * (1 << 20)
    with srv.connect() as sock:
        sock.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(MAX_BODY // len(chunk) + 1):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may have closed its side already
        (reply,) = parse_all(read_to_eof(sock))
    assert "limit is 4194304" in assert_error(reply, 413)


def test_body_at_the_limit_is_accepted(srv: ServerProcess) -> None:
    body, headers = binary_dynamic((MAX_BODY - 400) // 4)
    with Conn(srv.port, timeout=30) as conn:
        reply = conn.request("POST", "/v2/models/dynamic/infer", body, headers)
    assert reply.status == 200 and len(body) <= MAX_BODY


# Limits on the head


def test_header_too_large_is_431(srv: ServerProcess) -> None:
    with srv.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        (reply,) = parse_all(read_to_eof(sock))
    assert_error(reply, 431)


def test_url_too_long_is_414(srv: ServerProcess) -> None:
    with srv.connect() as sock:
        sock.sendall(b"GET /v2/models/" + b"m" * 9000 + b" HTTP/1.1\r\n\r\n")
        (reply,) = parse_all(read_to_eof(sock))
    assert_error(reply, 414)


@pytest.mark.parametrize(
    "data",
    [b"HELLO\r\n\r\n", b"GET /v2 HTTP/1.1\r\nNo colon here\r\n\r\n", b"GET /v2 HTTP/9.9\r\n\r\n",
     b"POST /v2/models/add/infer HTTP/1.1\r\nContent-Length: x\r\n\r\n",
     b"POST /v2/models/add/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
)
def test_malformed_http_is_400_json_and_close(srv: ServerProcess, data: bytes) -> None:
    with srv.connect() as sock:
        sock.sendall(data)
        (reply,) = parse_all(read_to_eof(sock))
    assert assert_error(reply, 400).startswith("Malformed HTTP request")
    assert reply.headers["connection"] == "close"


def test_request_one_byte_at_a_time(srv: ServerProcess) -> None:
    data = build("POST", "/v2/models/add/infer", ADD_BODY)
    with Conn(srv.port) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            conn.send(data[i : i + 1])
        reply = conn.read()
    assert reply.status == 200
    outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
    assert outputs["sum"] == [float(i + 1) for i in range(10)]


# Paths and methods


def test_paths_methods_and_content_length(srv: ServerProcess) -> None:
    with Conn(srv.port) as conn:  # all on one connection: a wrong Content-Length would derail the rest
        assert conn.request("GET", "//v2//health///live/").status == 200
        assert conn.request("GET", "/v2/health/ready?verbose=1&x=%zz").status == 200
        assert conn.request("GET", "/v2/models/%61dd").json()["name"] == "add"
        assert conn.request("POST", "/v2/models/%61%64d/infer?binary=no", ADD_BODY).status == 200
        for path in ("/v2/models/../v2/health/live", "/v2/./health/live", "/v2/models/%2e%2e/ready"):
            assert "'..'" in assert_error(conn.request("GET", path), 400)
        assert assert_error(conn.request("GET", "/v3/nothing"), 404) == "Invalid request URL"
        assert assert_error(conn.request("POST", "/v2/models/add/infer/more", b"{}"), 404)
        reply = conn.request("GET", "/v2/models/add/infer")
        assert assert_error(reply, 405) and reply.headers["allow"] == "POST, OPTIONS"
        reply = conn.request("DELETE", "/v2/models/add")
        assert assert_error(reply, 405) and reply.headers["allow"] == "GET, HEAD, OPTIONS"
        reply = conn.request("OPTIONS", "/v2/models/add/infer")
        assert (reply.status, reply.body, reply.headers["allow"]) == (204, b"", "POST, OPTIONS")
        assert "content-length" not in reply.headers
        get = conn.request("GET", "/v2/models/heavy")
        head = conn.request("HEAD", "/v2/models/heavy")
        assert head.status == 200 and head.body == b""
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
        assert "not a number" in assert_error(conn.request("GET", "/v2/models/add/versions/abc"), 400)
        assert assert_error(conn.request("GET", "/v2/models/add/versions/0"), 404)
        assert assert_error(conn.request("GET", "/v2/models/add/versions/" + "9" * 30 + "/ready"), 404)
        assert conn.request("GET", "/v2/models/add/versions/1/ready").status == 200
        assert conn.request("GET", "/v2/health/live").status == 200
        conn.sock.settimeout(0.2)  # nothing unexpected follows the last response
        with pytest.raises(TimeoutError):
            conn.sock.recv(1)
        assert conn.buffer == b""


# Back-pressure and abandoned connections


def test_client_that_does_not_read_gets_no_unbounded_buffering(srv: ServerProcess) -> None:
    body, headers = binary_dynamic(65536)  # 256 KiB in, 256 KiB out
    request = build("POST", "/v2/models/dynamic/infer", body, headers)
    with Conn(srv.port) as conn:
        for _ in range(3):  # warm the allocator before taking the baseline
            assert conn.request("POST", "/v2/models/dynamic/infer", body, headers).status == 200
    before = rss_kib(srv)
    # 200 MiB if the server read it all. Kernel buffers take at most ~40 MiB here (tcp_rmem max
    # 32 MiB on the server side, tcp_wmem max 4 MiB on ours), and the server queues at most 4 MiB.
    total = 800 * len(request)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", srv.port))
    sock.setblocking(False)
    stream = memoryview(request * 8)
    sent = 0
    try:
        while sent < total:
            _, writable, _ = select.select([], [sock], [], 1.5)
            if not writable:
                break  # blocked for 1.5 s: the server stopped reading
            offset = sent % len(request)
            sent += sock.send(stream[offset : offset + 4 * len(request)])
        grown_mib = (rss_kib(srv) - before) / 1024
    finally:
        reset_close(sock)
    assert sent < total // 2, f"the server took {sent >> 20} MiB from a client that reads nothing"
    assert grown_mib < 48, f"server RSS grew {grown_mib:.0f} MiB"
    with Conn(srv.port) as conn:
        assert conn.request("GET", "/v2/health/live").status == 200


def test_clients_aborting_mid_body_cost_nothing(srv: ServerProcess) -> None:
    with Conn(srv.port) as conn:
        assert conn.request("GET", "/v2/health/live").status == 200
    fds, rss = open_fds(srv), rss_kib(srv)
    head = b"POST /v2/models/dynamic/infer HTTP/1.1\r\nContent-Length: 4000000\r\n\r\n"
    socks = []
    for i in range(200):
        sock = srv.connect()
        sock.sendall(head + b"\0" * 300_000)
        socks.append(sock)
        if i % 50 == 49:  # at most 50 of ours open at a time
            for s in socks:
                reset_close(s) if len(socks) % 2 else s.close()
            socks.clear()
    with Conn(srv.port) as conn:
        assert conn.request("GET", "/v2/health/live").status == 200
    assert wait_for(lambda: open_fds(srv) <= fds + 2), f"fds {fds} -> {open_fds(srv)}"
    grown_mib = (rss_kib(srv) - rss) / 1024
    assert grown_mib < 30, f"server RSS grew {grown_mib:.0f} MiB after 200 aborted bodies of 300 KB"


def test_clients_aborting_mid_response_release_everything(srv: ServerProcess) -> None:
    body, headers = binary_dynamic(768 * 1024)  # 3 MiB out: more than the socket buffers hold
    request = build("POST", "/v2/models/dynamic/infer", body, headers)
    fds = open_fds(srv)
    for _ in range(12):  # many more than the model's infer requests (nireq 2)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(request)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        reset_close(sock)
    with Conn(srv.port, timeout=10) as conn:  # a leaked infer request would make this hang
        reply = conn.request("POST", "/v2/models/dynamic/infer", body, headers)
    assert reply.status == 200 and len(reply.body) > 3 * 1024 * 1024
    assert wait_for(lambda: open_fds(srv) <= fds + 2)


# Timeouts (the `strict` server: 1 s each, swept once a second)


def test_idle_keep_alive_connection_is_closed(strict: ServerProcess) -> None:
    with Conn(strict.port) as conn:
        for _ in range(4):  # busy for 2 s with 0.5 s gaps: never idle long enough
            assert conn.request("GET", "/v2/health/live").status == 200
            time.sleep(0.5)
        started = time.monotonic()
        assert conn.closed_by_peer(4)
        assert time.monotonic() - started < 3


def test_slowloris_headers_get_408_and_close(strict: ServerProcess) -> None:
    with strict.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Slow: ")
        for _ in range(20):  # one header byte every 0.25 s: always active, never complete
            if select.select([sock], [], [], 0.25)[0]:
                break  # the server answered
            sock.sendall(b"z")
        data = read_to_eof(sock)
    assert 1 <= time.monotonic() - started < 4
    (reply,) = parse_all(data)
    assert "headers" in assert_error(reply, 408)


def test_stalled_body_gets_408_and_close(strict: ServerProcess) -> None:
    with strict.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"inputs\"")
        (reply,) = parse_all(read_to_eof(sock, timeout=5))
    assert 1 <= time.monotonic() - started < 4
    assert "body" in assert_error(reply, 408)


# Connection limit


def test_connections_over_the_limit_get_503_and_close(few: ServerProcess) -> None:
    conns = [Conn(few.port) for _ in range(4)]
    try:
        for conn in conns:
            assert conn.request("GET", "/v2/health/live").status == 200
        with few.connect() as sock:
            (reply,) = parse_all(read_to_eof(sock))
        assert assert_error(reply, 503) == "Too many connections"
        assert reply.headers["retry-after"] == "1" and reply.headers["connection"] == "close"
        conns.pop().close()

        def admitted() -> bool:
            with Conn(few.port) as conn:
                try:
                    return conn.request("GET", "/v2/health/live").status == 200
                except ConnectionError:
                    return False

        assert wait_for(admitted)
    finally:
        for conn in conns:
            conn.close()
