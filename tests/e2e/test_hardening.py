"""Hardening on a real server: CORS only when asked, 503 + Retry-After under overload (and recovery),
gzip/deflate both ways with tritonclient's options, decompression bombs refused with 413."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.opsrepo import write_ops_repository
from tests.rawhttp import Conn, get
from tests.serverproc import ServerProcess
from tests.slowwork import MIN_ROWS, spin_request, spin_rows

ORIGIN = "https://app.example"
ADD = json.dumps({"inputs": [
    {"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
    {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10},
]}).encode()
# dynamic: y = 2x for x FP32 [-1,-1]; 32x32 gives a JSON response of ~5 KiB, worth compressing.
DYNAMIC = json.dumps({"inputs": [
    {"name": "x", "shape": [32, 32], "datatype": "FP32", "data": [float(i % 97) for i in range(1024)]},
]}).encode()
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type, inference-header-content-length"}


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = write_ops_repository(tmp_path_factory.mktemp("hardened"), ("add", "dynamic"))
    with ServerProcess("--config_path", str(config), "--allowed_origins", f"{ORIGIN},https://other.example",
                       "--allowed_methods", "GET,POST", "--max_decompressed_size", str(1 << 20)) as proc:
        yield proc


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """spin with 2 infer requests, at most 2 waiting, each for at most 0.1 s."""
    config = write_ops_repository(tmp_path_factory.mktemp("overloaded"), ("spin",), {"spin": {"nireq": 2}})
    with ServerProcess("--config_path", str(config), "--max_queue_size", "2",
                       "--request_timeout_seconds", "0.1") as proc:
        yield proc


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


# CORS


def test_cors_is_off_by_default(server: ServerProcess) -> None:
    with Conn(server.port) as conn:
        reply = conn.request("OPTIONS", "/v2/models/add/infer", headers=PREFLIGHT)
        assert reply.status == 204 and reply.headers["allow"] == "POST, OPTIONS"
        assert cors_headers(reply.headers) == {}
        reply = conn.request("POST", "/v2/models/add/infer", ADD, {"Origin": ORIGIN})
        assert reply.status == 200 and cors_headers(reply.headers) == {}


def test_cors_with_allowed_origins(hardened: ServerProcess) -> None:
    with Conn(hardened.port) as conn:
        reply = conn.request("OPTIONS", "/v2/models/add/infer", headers=PREFLIGHT)
        assert reply.status == 204
        assert cors_headers(reply.headers) == {
            "access-control-allow-origin": ORIGIN,
            "access-control-allow-methods": "GET, POST",
            "access-control-allow-headers": "*",
            "access-control-max-age": "600",
            "access-control-expose-headers": "inference-header-content-length, server-timing",
        }
        assert reply.headers["vary"] == "origin"
        reply = conn.request("POST", "/v2/models/add/infer", ADD, {"Origin": ORIGIN})
        assert reply.status == 200 and reply.headers["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-methods" not in reply.headers  # preflight-only headers
        # Errors carry the headers too, so a page can read the error message.
        reply = conn.request("GET", "/v2/models/nope", headers={"Origin": ORIGIN})
        assert reply.status == 404 and reply.headers["access-control-allow-origin"] == ORIGIN
        # An origin that is not listed gets no CORS headers: the browser keeps the answer from the page.
        reply = conn.request("OPTIONS", "/v2/models/add/infer", headers={**PREFLIGHT, "Origin": "https://evil.example"})
        assert reply.status == 204 and cors_headers(reply.headers) == {}
        reply = conn.request("GET", "/v2/health/ready", headers={"Origin": "https://evil.example"})
        assert reply.status == 200 and cors_headers(reply.headers) == {}


# Overload


def test_overload_is_503_with_retry_after_and_recovers(overloaded: ServerProcess) -> None:
    # 2 run, 2 wait (then time out: each inference is sized to take 1 s, 10x the wait allowed),
    # the rest are refused.
    conns = [Conn(overloaded.port, timeout=60) for _ in range(8)]
    try:
        request = spin_request(spin_rows(1.0))
        for conn in conns:
            conn.send(request)
        replies = [conn.read() for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    statuses = [r.status for r in replies]
    assert statuses.count(200) >= 2, statuses
    refused = [r for r in replies if r.status == 503]
    messages = {r.json()["error"].split(" model")[0].split(" after")[0] for r in refused}
    assert messages == {"Too many requests waiting for", "Timed out"}, [r.body for r in refused]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert set(statuses) <= {200, 503}
    # Recovered: the queue is empty again, the model answers, the server is ready.
    with Conn(overloaded.port, timeout=60) as conn:
        conn.send(spin_request(MIN_ROWS))
        reply = conn.read()
        assert reply.status == 200, reply.body
        assert reply.json()["outputs"][0]["shape"] == [MIN_ROWS, 1]
    assert get(overloaded.port, "/v2/health/ready").status == 200


# Compression


def test_gzip_bomb_is_413_and_the_connection_stays_usable(hardened: ServerProcess) -> None:
    bomb = gzip.compress(b" " * (16 << 20))  # 16 MiB of spaces in ~16 KiB, 16x the 1 MiB limit
    with Conn(hardened.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", bomb, {"Content-Encoding": "gzip"})
        assert reply.status == 413
        assert reply.json() == {"error": f"Request body too large once decompressed: the limit is {1 << 20} bytes"}
        reply = conn.request("POST", "/v2/models/add/infer", gzip.compress(ADD), {"Content-Encoding": "gzip"})
        assert reply.status == 200, reply.body


def test_bad_request_codings(hardened: ServerProcess) -> None:
    with Conn(hardened.port) as conn:
        reply = conn.request("POST", "/v2/models/add/infer", gzip.compress(ADD)[:-8], {"Content-Encoding": "gzip"})
        assert reply.status == 400 and "Invalid compressed request body" in reply.json()["error"]
        reply = conn.request("POST", "/v2/models/add/infer", ADD, {"Content-Encoding": "br"})
        assert reply.status == 415 and "br" in reply.json()["error"]
        reply = conn.request("POST", "/v2/models/add/infer", ADD, {"Content-Encoding": "identity"})
        assert reply.status == 200


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_raw_response_compression(hardened: ServerProcess, coding: str) -> None:
    decompress = gzip.decompress if coding == "gzip" else zlib.decompress
    with Conn(hardened.port) as conn:
        reply = conn.request("POST", "/v2/models/dynamic/infer", DYNAMIC, {"Accept-Encoding": f"br, {coding}"})
        assert reply.status == 200 and reply.headers["content-encoding"] == coding
        assert int(reply.headers["content-length"]) == len(reply.body)
        data = json.loads(decompress(reply.body))["outputs"][0]["data"]
        assert data == [2.0 * (i % 97) for i in range(1024)]
        # Small answers (under 1 KiB) go out as they are.
        reply = conn.request("POST", "/v2/models/add/infer", ADD, {"Accept-Encoding": coding})
        assert reply.status == 200 and "content-encoding" not in reply.headers
        assert {o["name"] for o in reply.json()["outputs"]} == {"sum", "diff"}
        # No Accept-Encoding, no compression.
        reply = conn.request("POST", "/v2/models/dynamic/infer", DYNAMIC)
        assert "content-encoding" not in reply.headers and json.loads(reply.body)["outputs"]


@pytest.mark.parametrize("request_coding", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_coding", [None, "gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_compression_round_trip(
    hardened: ServerProcess, request_coding: str | None, response_coding: str | None, binary: bool
) -> None:
    x = (np.arange(64 * 48, dtype=np.float32) % 101).reshape(64, 48)
    client = httpclient.InferenceServerClient(hardened.host)
    try:
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(
            "dynamic", [tensor], outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)],
            request_compression_algorithm=request_coding, response_compression_algorithm=response_coding,
        )
        np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
        response = result.get_response()
        assert response["model_name"] == "dynamic"
    finally:
        client.close()
