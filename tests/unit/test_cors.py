"""CORS header bytes: fixed for "*", echoed for listed origins, preflight extras, credentials rules."""

from __future__ import annotations

import pytest

from fastserve.cors import Cors, check_header_value
from fastserve.http.request import Request


def req(method: bytes = b"GET", **headers: str) -> Request:
    lowered = {k.replace("_", "-").lower().encode(): v.encode() for k, v in headers.items()}
    return Request(method, b"/v2/models/m/infer", lowered, b"", True, False)


def lines(raw: bytes) -> dict[str, str]:
    assert raw == b"" or raw.endswith(b"\r\n")
    out = {}
    for line in raw.decode().split("\r\n"):
        if line:
            name, _, value = line.partition(": ")
            assert name not in out, f"duplicate {name}"
            out[name] = value
    return out


def test_any_origin_without_credentials_is_one_fixed_answer() -> None:
    cors = Cors("*")
    plain = lines(cors(req(Origin="https://x.example")))
    assert plain["access-control-allow-origin"] == "*"
    assert "inference-header-content-length" in plain["access-control-expose-headers"]
    assert "vary" not in plain and "access-control-allow-credentials" not in plain
    assert cors(req()) == cors(req(Origin="https://y.example")) == cors(None)
    preflight = lines(cors(req(b"OPTIONS", Origin="https://x.example", Access_Control_Request_Method="POST")))
    assert preflight["access-control-allow-methods"] == "*"
    assert preflight["access-control-allow-headers"] == "*"
    assert preflight["access-control-max-age"] == "600"


def test_listed_origins_are_echoed_others_get_nothing() -> None:
    cors = Cors("https://a.example, https://b.example", methods="GET,POST", headers="content-type")
    allowed = lines(cors(req(Origin="https://b.example")))
    assert allowed["access-control-allow-origin"] == "https://b.example"
    assert allowed["vary"] == "origin"
    assert lines(cors(req(Origin="https://evil.example"))) == {"vary": "origin"}
    assert lines(cors(req())) == {"vary": "origin"}
    preflight = lines(cors(req(b"OPTIONS", Origin="https://a.example", Access_Control_Request_Method="POST")))
    assert preflight["access-control-allow-methods"] == "GET, POST"
    assert preflight["access-control-allow-headers"] == "content-type"
    # A plain OPTIONS (no Access-Control-Request-Method) is not a preflight.
    assert "access-control-allow-methods" not in lines(cors(req(b"OPTIONS", Origin="https://a.example")))


def test_credentials_never_use_wildcards() -> None:
    cors = Cors("*", credentials=True)
    out = lines(cors(req(b"OPTIONS", Origin="https://x.example", Access_Control_Request_Method="PUT",
                         Access_Control_Request_Headers="x-token, content-type")))
    assert out["access-control-allow-origin"] == "https://x.example"
    assert out["access-control-allow-credentials"] == "true"
    assert out["access-control-allow-methods"] == "PUT"
    assert out["access-control-allow-headers"] == "x-token, content-type"


@pytest.mark.parametrize("bad", ["https://a.example\r\nset-cookie: x=1", "https://ä.example", "a\0b"])
def test_flag_values_that_cannot_be_headers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--allowed_origins"):
        check_header_value("--allowed_origins", bad)
