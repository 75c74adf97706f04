"""azfs:// (Azure Files) model repositories against tests/azfiles.py on 127.0.0.1.

Azurite has no File service, so the store is our emulator of the subset of the Azure Files REST
API the real SDK uses (listing, properties, ranged reads), which checks Shared Key signatures
against the account key. The first server reaches it through tests/storeproxy.py (the
connection string's FileEndpoint points at the proxy), so a download can be cut in the middle;
the emulator answers listings two entries a page, so the walk follows NextMarker. Reloads are
asked for with POST /v1/config/reload, except in the config.json test, which uses the poll.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import openvino as ov
import pytest

from tests.e2e.test_hot_reload import Looper, served_version, states, versioned_body, wait_for
from tests.modelzoo import save, versioned_model
from tests.rawhttp import get, post_json
from tests.remoteserved import check_stopped_mid_download, infer_latest, reload, versions_in
from tests.s3store import clean_env
from tests.serverproc import ServerProcess
from tests.storeproxy import StoreProxy

pytest.importorskip("azure.storage.fileshare", reason="the azure extra: pip install -e '.[azure]'")

from tests.azfiles import KEY, AzureFiles  # noqa: E402

SHARE = "models"
WAIT = 30.0
TIMEOUT = 60
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="


def put_model(store: AzureFiles, prefix: str, version: int, model: ov.Model) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(model, Path(tmp), version)
        for name in ("model.bin", "model.xml"):  # the .xml last: a version is listed once it is whole
            store.put(SHARE, f"{prefix}/{version}/{name}", (folder / name).read_bytes())


def remove_version(store: AzureFiles, prefix: str, version: int) -> None:
    """In one step for the emulator's listings (it hides names starting with .tmp), then deleted."""
    folder = store.root / SHARE / prefix / str(version)
    hidden = folder.with_name(f".tmp-gone-{version}")
    os.replace(folder, hidden)
    shutil.rmtree(hidden)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureFiles]:
    root = tmp_path_factory.mktemp("azfiles") / "shares"
    (root / SHARE).mkdir(parents=True)
    server = AzureFiles(root, page_size=2)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(store: AzureFiles) -> Iterator[StoreProxy]:
    relay = StoreProxy(store.port)
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def served(store: AzureFiles, proxy: StoreProxy, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, Path]]:
    for version in (1, 2):
        put_model(store, "versioned", version, versioned_model(version))
    cache = tmp_path_factory.mktemp("azfscache")
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(proxy.port))
    with ServerProcess("--model_name", "versioned", "--model_path", f"azfs://{SHARE}/versioned",
                       "--model_version_policy", '{"all": {}}', "--file_system_poll_wait_seconds", "0",
                       "--remote_cache_dir", str(cache), env=env) as proc:
        yield proc, cache


def test_serves_and_infers_the_versions_on_an_azure_file_share(served: tuple[ServerProcess, Path]) -> None:
    server, cache = served
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["1", "2"]
    x = [0.5, 1.5, 2.5, 3.5]
    for version in (1, 2):
        reply = post_json(server.port, f"/v2/models/versioned/versions/{version}/infer", versioned_body(x))
        assert served_version(reply, x) == version
    assert versions_in(cache) == ["1", "2"]
    assert "downloading version 2 from azfs://models/versioned (2 files" in server.log()


def test_new_version_appears_removed_one_unloads_and_no_request_fails(
        served: tuple[ServerProcess, Path], store: AzureFiles) -> None:
    server, cache = served
    looper = Looper(server.port)
    try:
        assert wait_for(lambda: len(looper.seen) > 10)
        put_model(store, "versioned", 3, versioned_model(3))
        assert reload(server.port).status == 201
        assert wait_for(lambda: looper.seen[-1] == 3)
        remove_version(store, "versioned", 1)
        assert reload(server.port).status == 201
        seen = len(looper.seen)
        assert wait_for(lambda: len(looper.seen) > seen + 10)
    finally:
        looper.join()
    assert not looper.failures, looper.failures[:3]
    assert wait_for(lambda: states(server.port, "versioned")[1] == ("END", "OK"))
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["2", "3"]
    assert versions_in(cache) == ["2", "3"]
    assert reload(server.port).status == 200  # nothing changed: nothing downloaded again
    assert server.log().count("downloading version 3") == 1


def test_a_download_cut_midway_is_retried_and_never_loaded_partly(
        served: tuple[ServerProcess, Path], store: AzureFiles, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.cut("/versioned/4/model.bin")
    put_model(store, "versioned", 4, versioned_model(4))
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 4  # the whole model: y = x + 4
    assert sum(p.endswith("/versioned/4/model.bin") and "?" not in p for p in proxy.paths) >= 2
    log = server.log()
    assert "azfs://models/versioned/4/model.bin: " in log and "retrying in 0.25 s (attempt 2 of 5)" in log
    assert versions_in(cache) == ["2", "3", "4"]


def test_a_corrupted_download_is_caught_by_its_checksum_and_fetched_again(
        served: tuple[ServerProcess, Path], store: AzureFiles, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.corrupt("/versioned/5/model.bin")
    put_model(store, "versioned", 5, versioned_model(5))
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 5  # y = x + 5: the good copy, not the spoiled one
    retried = [line for line in server.log().splitlines() if "azfs://models/versioned/5/model.bin: " in line]
    assert retried and "MD5" in retried[0] and "retrying in 0.25 s" in retried[0], retried
    assert versions_in(cache)[-1] == "5"  # complete (size and MD5 checked), renamed into place


def test_config_json_on_a_file_share_through_http_proxy_follows_the_poll(
        store: AzureFiles, proxy: StoreProxy, tmp_path: Path) -> None:
    put_model(store, "cfg/versioned", 1, versioned_model(1))
    config = {"model_config_list": [{"config": {"name": "versioned", "base_path": "versioned"}}]}
    store.put(SHARE, "cfg/config.json", json.dumps(config).encode())
    # Straight to the emulator's port, but through http_proxy: the proxy must see every request.
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(),
                    http_proxy=f"http://127.0.0.1:{proxy.port}")
    before = len(proxy.paths)
    with ServerProcess("--config_path", f"azfs://{SHARE}/cfg/config.json", "--file_system_poll_wait_seconds", "1",
                       "--remote_cache_dir", str(tmp_path), "--log_level", "DEBUG", env=env) as server:
        assert infer_latest(server.port) == 1
        put_model(store, "cfg/versioned", 2, versioned_model(2))  # found by the poll, no reload asked
        assert wait_for(lambda: infer_latest(server.port) == 2, WAIT), server.log()
        # The default policy serves the latest version only: version 1 leaves the cache too.
        assert wait_for(lambda: versions_in(tmp_path) == ["2"], WAIT), versions_in(tmp_path)
        assert KEY not in server.log() and "Authorization" not in server.log()  # even at DEBUG
    seen = proxy.paths[before:]
    assert "/devstoreaccount1/models/cfg/config.json" in seen and "/devstoreaccount1/models/cfg/versioned/2/model.bin" \
        in seen, seen


@pytest.mark.parametrize(("case", "message"), [
    ("wrong key", "the request was refused: wrong account key in AZURE_STORAGE_CONNECTION_STRING, or no permission "
                  "(AuthenticationFailed: Server failed to authenticate the request"),
    ("missing share", "--model_path: model m: the share, directory or file does not exist (ShareNotFound"),
    ("missing folder", "no version folder with a model file in azfs://models/no-such-model"),
    ("no connection string", "azfs:// paths need AZURE_STORAGE_CONNECTION_STRING"),
])
def test_bad_credentials_or_share_stop_start_up(store: AzureFiles, tmp_path: Path, case: str, message: str) -> None:
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(key=WRONG_KEY if case == "wrong key"
                                                                             else KEY))
    if case == "no connection string":
        env.pop("AZURE_STORAGE_CONNECTION_STRING")
    path = {"missing share": "azfs://no-such-share/m",
            "missing folder": f"azfs://{SHARE}/no-such-model"}.get(case, f"azfs://{SHARE}/versioned")
    command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
               "--model_name", "m", "--model_path", path, "--remote_cache_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in output, output
    assert WRONG_KEY not in output and KEY not in output
    if case == "wrong key":  # the emulator checked the signature and refused it
        assert any(line.endswith("-> 403") for line in store.requests())


def test_a_store_stopped_mid_download_keeps_the_served_versions(tmp_path: Path) -> None:
    (tmp_path / "shares" / SHARE).mkdir(parents=True)
    store = AzureFiles(tmp_path / "shares")
    relay = StoreProxy(store.port)
    try:
        put_model(store, "m", 1, versioned_model(1))
        env = clean_env(AZURE_STORAGE_CONNECTION_STRING=store.connection_string(relay.port))
        with ServerProcess("--model_name", "versioned", "--model_path", f"azfs://{SHARE}/m",
                           "--model_version_policy", '{"all": {}}', "--file_system_poll_wait_seconds", "0",
                           "--remote_cache_dir", str(tmp_path / "cache"), env=env) as server:
            check_stopped_mid_download(server, relay, store.stop, lambda: put_model(store, "m", 2, versioned_model(2)),
                                       tmp_path / "cache", "azfs://models/m/2/model.bin")
    finally:
        relay.close()
        store.stop()
