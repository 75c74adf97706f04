"""Calls the remote-store tests (tests/e2e/test_s3.py, test_gcs.py, test_azure.py) share: a
reload, an inference that tells the version served, and what the local cache mirror holds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tests.e2e.test_hot_reload import served_version, versioned_body
from tests.rawhttp import Conn, Reply, get, post_json
from tests.serverproc import ServerProcess
from tests.storeproxy import StoreProxy

WAIT = 60.0


def reload(port: int, timeout: float = WAIT) -> Reply:
    with Conn(port, timeout=timeout) as conn:
        return conn.request("POST", "/v1/config/reload")


def infer_latest(port: int, x: list[float] | None = None) -> int:
    x = x or [1.0, 2.0, 3.0, 4.0]
    return served_version(post_json(port, "/v2/models/versioned/infer", versioned_body(x)), x)


def versions_in(cache: Path) -> list[str]:
    """The version folders of the one model mirror in the cache (a remote config.json's copy aside)."""
    (mirror,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("config-")]
    return sorted(p.name for p in mirror.iterdir())


def check_stopped_mid_download(server: ServerProcess, proxy: StoreProxy, stop_store: Callable[[], None],
                               publish_version_2: Callable[[], None], cache: Path, what: str,
                               held: str = "/2/model.bin") -> None:
    """Version 1 served; version 2's model.bin (the request path ending with `held`) is held by the
    proxy while the store is stopped: the reload fails (500) after the retries, version 1 keeps
    serving, and nothing partial is left. `what` is the object the error line names."""
    assert infer_latest(server.port) == 1
    proxy.hold(held)
    publish_version_2()
    answer: list[Reply] = []
    pending = threading.Thread(target=lambda: answer.append(reload(server.port)))
    pending.start()
    try:
        assert proxy.held.wait(WAIT)
        assert infer_latest(server.port) == 1  # a slow store delays nothing that is served
        stop_store()
    finally:
        proxy.release()
        pending.join(WAIT)
    assert answer and answer[0].status == 500, answer
    assert infer_latest(server.port) == 1
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["1"]
    assert versions_in(cache) == ["1"]  # no version 2, no partial folder
    errors = [line for line in server.log().splitlines() if "[ERROR]" in line]
    assert any(what in e and "gave up after 5 attempts" in e for e in errors), errors
