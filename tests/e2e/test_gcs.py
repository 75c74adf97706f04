"""gs:// model repositories against a GCS emulator on 127.0.0.1 (gcp-storage-emulator, a child process).

The server reaches the emulator through tests/storeproxy.py (STORAGE_EMULATOR_HOST points at the
proxy), so a download can be cut in the middle. Reloads are asked for with POST /v1/config/reload.
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

pytest.importorskip("gcp_storage_emulator", reason="the test extra installs it: pip install -e '.[test]'")
pytest.importorskip("google.cloud.storage", reason="the gcs extra: pip install -e '.[gcs]'")

from tests.gcsstore import GCSServer  # noqa: E402
from tests.gcstoken import TokenServer  # noqa: E402

BUCKET = "models"
WAIT = 30.0
TIMEOUT = 60


@pytest.fixture(scope="module")
def store() -> Iterator[GCSServer]:
    server = GCSServer(BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(store: GCSServer) -> Iterator[StoreProxy]:
    relay = StoreProxy(store.port)
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def served(store: GCSServer, proxy: StoreProxy, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, Path]]:
    for version in (1, 2):
        store.put_model("versioned", version, versioned_model(version))
    cache = tmp_path_factory.mktemp("gcscache")
    env = clean_env(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{proxy.port}")
    with ServerProcess("--model_name", "versioned", "--model_path", f"gs://{BUCKET}/versioned",
                       "--model_version_policy", '{"all": {}}', "--file_system_poll_wait_seconds", "0",
                       "--remote_cache_dir", str(cache), env=env) as proc:
        yield proc, cache


def test_serves_and_infers_the_versions_on_gcs(served: tuple[ServerProcess, Path]) -> None:
    server, cache = served
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["1", "2"]
    x = [0.5, 1.5, 2.5, 3.5]
    for version in (1, 2):
        reply = post_json(server.port, f"/v2/models/versioned/versions/{version}/infer", versioned_body(x))
        assert served_version(reply, x) == version
    assert versions_in(cache) == ["1", "2"]


def test_new_version_appears_removed_one_unloads_and_no_request_fails(
        served: tuple[ServerProcess, Path], store: GCSServer) -> None:
    server, cache = served
    looper = Looper(server.port)
    try:
        assert wait_for(lambda: len(looper.seen) > 10)
        store.put_model("versioned", 3, versioned_model(3))
        assert reload(server.port).status == 201
        assert wait_for(lambda: looper.seen[-1] == 3)
        store.delete_prefix("versioned/1/")
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
        served: tuple[ServerProcess, Path], store: GCSServer, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.cut("/versioned%2F4%2Fmodel.bin")  # the JSON API's media path: /download/storage/v1/b/<b>/o/<name>
    store.put_model("versioned", 4, versioned_model(4))
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 4
    assert "gs://models/versioned/4/model.bin: " in server.log() and "retrying in 0.25 s" in server.log()
    assert versions_in(cache) == ["2", "3", "4"]


def test_config_json_on_gcs_through_http_proxy(store: GCSServer, proxy: StoreProxy, tmp_path: Path) -> None:
    store.put_model("cfg/versioned", 1, versioned_model(1))
    config = {"model_config_list": [{"config": {"name": "versioned", "base_path": "versioned"}}]}
    store.put("cfg/config.json", json.dumps(config).encode())
    # Straight to the emulator's port, but through http_proxy: the proxy must see the requests.
    env = clean_env(STORAGE_EMULATOR_HOST=store.url, http_proxy=f"http://127.0.0.1:{proxy.port}")
    before = len(proxy.paths)
    with ServerProcess("--config_path", f"gs://{BUCKET}/cfg/config.json", "--remote_cache_dir", str(tmp_path),
                       env=env) as server:
        assert infer_latest(server.port) == 1
    seen = proxy.paths[before:]
    assert any(p.endswith("/cfg%2Fconfig.json") for p in seen) and any(
        p.endswith("/cfg%2Fversioned%2F1%2Fmodel.bin") for p in seen), seen


def test_a_service_account_key_file_in_google_application_credentials(store: GCSServer, tmp_path: Path) -> None:
    """The key file's JWT is traded at its token_uri (tests/gcstoken.py checks its signature) and the
    token is what reaches the store; neither the token nor the private key is logged."""
    tokens, relay = TokenServer(), StoreProxy(store.port)
    try:
        store.put_model("sa/versioned", 1, versioned_model(1))
        env = clean_env(GOOGLE_APPLICATION_CREDENTIALS=str(tokens.key_file(tmp_path)),
                        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{relay.port}")
        with ServerProcess("--model_name", "versioned", "--model_path", f"gs://{BUCKET}/sa/versioned",
                           "--remote_cache_dir", str(tmp_path / "cache"), "--log_level", "DEBUG", env=env) as server:
            assert infer_latest(server.port) == 1
            log = server.log()
    finally:
        relay.close()
        tokens.close()
    assert len(tokens.issued) >= 1 and not tokens.refused, tokens.refused
    assert relay.authorizations and set(relay.authorizations) <= {f"Bearer {t}" for t in tokens.issued}
    assert not any(t in log for t in tokens.issued) and "PRIVATE KEY" not in log


def test_a_key_file_with_the_wrong_private_key_stops_start_up(store: GCSServer, tmp_path: Path) -> None:
    tokens = TokenServer()
    try:
        env = clean_env(GOOGLE_APPLICATION_CREDENTIALS=str(tokens.key_file(tmp_path, forged=True)),
                        STORAGE_EMULATOR_HOST=store.url)
        command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
                   "--model_name", "m", "--model_path", f"gs://{BUCKET}/versioned", "--remote_cache_dir",
                   str(tmp_path / "cache")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                                stdin=subprocess.DEVNULL)
    finally:
        tokens.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the credentials were refused" in result.stderr and "invalid_grant" in result.stderr, result.stderr
    assert tokens.refused == ["invalid_grant: bad signature"] * len(tokens.refused) and not tokens.issued
    assert "PRIVATE KEY" not in result.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"},
     "cannot use GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json"),
    ({"STORAGE_EMULATOR_HOST": "EMULATOR"}, "--model_path: model m: the bucket or object does not exist"),
])
def test_bad_credentials_or_bucket_stop_start_up(store: GCSServer, tmp_path: Path, env: dict, message: str) -> None:
    env = {k: (store.url if v == "EMULATOR" else v) for k, v in env.items()}
    command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
               "--model_name", "m", "--model_path", "gs://no-such-bucket/m", "--remote_cache_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(**env),
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr


def test_a_store_stopped_mid_download_keeps_the_served_versions(tmp_path: Path) -> None:
    store = GCSServer(BUCKET)
    relay = StoreProxy(store.port)
    try:
        store.put_model("m", 1, versioned_model(1))
        env = clean_env(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{relay.port}")
        with ServerProcess("--model_name", "versioned", "--model_path", f"gs://{BUCKET}/m",
                           "--model_version_policy", '{"all": {}}', "--file_system_poll_wait_seconds", "0",
                           "--remote_cache_dir", str(tmp_path), env=env) as server:
            check_stopped_mid_download(server, relay, store.stop, lambda: store.put_model("m", 2, versioned_model(2)),
                                       tmp_path, "gs://models/m/2/model.bin", held="/m%2F2%2Fmodel.bin")
    finally:
        relay.close()
        store.stop()
