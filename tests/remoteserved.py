"""Calls the remote-store tests (tests/e2e/test_s3.py, test_gcs.py, test_azure.py) share: a
reload, an inference that tells the version served, and what the local cache mirror holds."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_hot_reload import served_version, versioned_body
from tests.rawhttp import Conn, Reply, post_json

WAIT = 60.0


def reload(port: int, timeout: float = WAIT) -> Reply:
    with Conn(port, timeout=timeout) as conn:
        return conn.request("POST", "/v1/config/reload")


def infer_latest(port: int, x: list[float] | None = None) -> int:
    x = x or [1.0, 2.0, 3.0, 4.0]
    return served_version(post_json(port, "/v2/models/versioned/infer", versioned_body(x)), x)


def versions_in(cache: Path) -> list[str]:
    """The version folders of the one mirror in the cache."""
    (mirror,) = [p for p in cache.iterdir() if p.is_dir()]
    return sorted(p.name for p in mirror.iterdir())
