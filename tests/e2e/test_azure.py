"""az:// model repositories against Azurite on 127.0.0.1 (tests/azurite.py), which checks the account key.

The first server reaches Azurite through tests/storeproxy.py (the connection string's
BlobEndpoint points at the proxy), so a download can be cut in the middle. Reloads are asked
for with POST /v1/config/reload.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_hot_reload import Looper, served_version, states, versioned_body, wait_for
from tests.modelzoo import versioned_model
from tests.rawhttp import get, post_json
from tests.remoteserved import check_stopped_mid_download, infer_latest, reload, versions_in
from tests.s3store import clean_env
from tests.serverproc import ServerProcess
from tests.storeproxy import StoreProxy

pytest.importorskip("azure.storage.blob", reason="the azure extra: pip install -e '.[azure]'")

from tests.azurite import KEY, Azurite  # noqa: E402

CONTAINER = "models"
WAIT = 30.0
TIMEOUT = 60
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="


@pytest.fixture(scope="module")
def store() -> Iterator[Azurite]:
    server = Azurite()
    server.service.create_container(CONTAINER)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(store: Azurite) -> Iterator[StoreProxy]:
    relay = StoreProxy(store.port)
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def served(store: Azurite, proxy: StoreProxy, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, Path]]:
    for version in (1, 2):
        store.put_model(CONTAINER, "versioned", version, versioned_model(version))
    cache = tmp_path_factory.mktemp("azcache")
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(proxy.port))
    with ServerProcess("--model_name", "versioned", "--model_path", f"az://{CONTAINER}/versioned",
                       "--model_version_policy", '{"all": {}}', "--file_system_poll_wait_seconds", "0",
                       "--remote_cache_dir", str(cache), env=env) as proc:
        yield proc, cache


def test_serves_and_infers_the_versions_on_azure(served: tuple[ServerProcess, Path]) -> None:
    server, cache = served
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["1", "2"]
    x = [0.5, 1.5, 2.5, 3.5]
    for version in (1, 2):
        reply = post_json(server.port, f"/v2/models/versioned/versions/{version}/infer", versioned_body(x))
        assert served_version(reply, x) == version
    assert versions_in(cache) == ["1", "2"]


def test_new_version_appears_removed_one_unloads_and_no_request_fails(
        served: tuple[ServerProcess, Path], store: Azurite) -> None:
    server, cache = served
    looper = Looper(server.port)
    try:
        assert wait_for(lambda: len(looper.seen) > 10)
        store.put_model(CONTAINER, "versioned", 3, versioned_model(3))
        assert reload(server.port).status == 201
        assert wait_for(lambda: looper.seen[-1] == 3)
        store.delete_prefix(CONTAINER, "versioned/1/")
        assert reload(server.port).status == 201
        seen = len(looper.seen)
        assert wait_for(lambda: len(looper.seen) > seen + 10)
    finally:
        looper.join()
    assert not looper.failures, looper.failures[:3]
    assert wait_for(lambda: states(server.port, "versioned")[1] == ("END", "OK"))
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["2", "3"]
    assert versions_in(cache) == ["2", "3"]


def test_a_download_cut_midway_is_retried_and_never_loaded_partly(
        served: tuple[ServerProcess, Path], store: Azurite, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.cut("/versioned/4/model.bin")
    store.put_model(CONTAINER, "versioned", 4, versioned_model(4))
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 4
    # The Azure SDK asks again for the rest of a cut download itself (then retry.py would): two GETs.
    assert sum(p.endswith("/versioned/4/model.bin") for p in proxy.paths) >= 2
    assert versions_in(cache) == ["2", "3", "4"]


def test_config_json_on_azure_through_http_proxy(store: Azurite, proxy: StoreProxy, tmp_path: Path) -> None:
    store.put_model(CONTAINER, "cfg/versioned", 1, versioned_model(1))
    config = {"model_config_list": [{"config": {"name": "versioned", "base_path": "versioned"}}]}
    store.put(CONTAINER, "cfg/config.json", json.dumps(config).encode())
    # Straight to Azurite's port, but through http_proxy: the proxy must see the requests.
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(),
                    http_proxy=f"http://127.0.0.1:{proxy.port}")
    before = len(proxy.paths)
    with ServerProcess("--config_path", f"az://{CONTAINER}/cfg/config.json", "--remote_cache_dir", str(tmp_path),
                       env=env) as server:
        assert infer_latest(server.port) == 1
    seen = proxy.paths[before:]
    assert "/devstoreaccount1/models/cfg/config.json" in seen and "/devstoreaccount1/models/cfg/versioned/1/model.bin" \
        in seen, seen


@pytest.mark.parametrize(("case", "message"), [
    ("wrong key", "the request was refused: wrong account key in AZURE_STORAGE_CONNECTION_STRING"),
    ("missing container", "the container or blob does not exist (ContainerNotFound"),
    ("no connection string", "az:// paths need AZURE_STORAGE_CONNECTION_STRING"),
])
def test_bad_credentials_or_container_stop_start_up(store: Azurite, tmp_path: Path, case: str,
                                                    message: str) -> None:
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(key=WRONG_KEY if case == "wrong key"
                                                                             else KEY))
    if case == "no connection string":
        env.pop("AZURE_STORAGE_CONNECTION_STRING")
    path = "az://no-such-container/m" if case == "missing container" else f"az://{CONTAINER}/versioned"
    command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
               "--model_name", "m", "--model_path", path, "--remote_cache_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in output, output
    assert WRONG_KEY not in output and KEY not in output


def test_a_store_stopped_mid_download_keeps_the_served_versions(tmp_path: Path) -> None:
    store = Azurite()
    relay = StoreProxy(store.port)
    try:
        store.service.create_container(CONTAINER)
        store.put_model(CONTAINER, "m", 1, versioned_model(1))
        env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(relay.port))
        with ServerProcess("--model_name", "versioned", "--model_path", f"az://{CONTAINER}/m",
                           "--model_version_policy", '{"all": {}}', "--file_system_poll_wait_seconds", "0",
                           "--remote_cache_dir", str(tmp_path), env=env) as server:
            check_stopped_mid_download(server, relay, store.stop,
                                       lambda: store.put_model(CONTAINER, "m", 2, versioned_model(2)), tmp_path,
                                       "az://models/m/2/model.bin")
    finally:
        relay.close()
        store.stop()
