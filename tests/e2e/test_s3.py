"""s3:// model repositories against a real S3 server on 127.0.0.1 (moto's, in a child process).

The first servers read the store anonymously (a public bucket) through tests/storeproxy.py, so a
test can cut a download in the middle or hold it while it stops the store. Reloads are asked for
with POST /v1/config/reload (no polling), so each test knows when a change is applied; one test
uses the poll. The credential tests run against a second store that checks signatures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_hot_reload import Looper, served_version, states, versioned_body, wait_for
from tests.modelzoo import add_model, versioned_model
from tests.rawhttp import Reply, get, post_json
from tests.remoteserved import infer_latest, reload
from tests.s3store import REGION, S3Server, clean_env
from tests.serverproc import ServerProcess
from tests.storeproxy import StoreProxy

pytest.importorskip("moto", reason="the test extra installs moto: pip install -e '.[test]'")

BUCKET = "models"
WAIT = 30.0  # seconds: upper bound for a change to be picked up
TIMEOUT = 60  # seconds for a start-up that must fail
ALL = '{"all": {}}'


@pytest.fixture(scope="module")
def store() -> Iterator[S3Server]:
    server = S3Server()
    server.s3.create_bucket(Bucket=BUCKET)
    server.make_public(BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(store: S3Server) -> Iterator[StoreProxy]:
    relay = StoreProxy(store.port)
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def served(store: S3Server, proxy: StoreProxy, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, Path]]:
    for version in (1, 2):
        store.put_model(BUCKET, "versioned", version, versioned_model(version))
    cache = tmp_path_factory.mktemp("s3cache")
    env = clean_env(S3_ENDPOINT=f"127.0.0.1:{proxy.port}")  # no keys: anonymous, as a public bucket
    with ServerProcess("--model_name", "versioned", "--model_path", f"s3://{BUCKET}/versioned",
                       "--model_version_policy", ALL, "--file_system_poll_wait_seconds", "0",
                       "--remote_cache_dir", str(cache), env=env) as proc:
        yield proc, cache


def version_folders(cache: Path) -> dict[str, list[str]]:
    """What each mirror folder holds: version folders and anything else (partial downloads)."""
    return {mirror.name.rsplit("-", 1)[0]: sorted(p.name for p in mirror.iterdir()) for mirror in cache.iterdir()
            if mirror.is_dir()}


def test_serves_and_infers_the_versions_on_s3(served: tuple[ServerProcess, Path]) -> None:
    server, cache = served
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["1", "2"]
    x = [0.5, 1.5, 2.5, 3.5]
    for version in (1, 2):
        reply = post_json(server.port, f"/v2/models/versioned/versions/{version}/infer", versioned_body(x))
        assert served_version(reply, x) == version
    assert version_folders(cache) == {"models_versioned": ["1", "2"]}
    assert "downloading version 2 from s3://models/versioned (2 files" in server.log()


def test_new_version_appears_removed_one_unloads_and_no_request_fails(
        served: tuple[ServerProcess, Path], store: S3Server) -> None:
    server, cache = served
    looper = Looper(server.port)
    try:
        assert wait_for(lambda: len(looper.seen) > 10)
        store.put_model(BUCKET, "versioned", 3, versioned_model(3))
        assert reload(server.port).status == 201
        assert wait_for(lambda: looper.seen[-1] == 3)
        store.delete_prefix(BUCKET, "versioned/1/")
        assert reload(server.port).status == 201
        seen = len(looper.seen)
        assert wait_for(lambda: len(looper.seen) > seen + 10)
    finally:
        looper.join()
    assert not looper.failures, looper.failures[:3]
    assert wait_for(lambda: states(server.port, "versioned")[1] == ("END", "OK"))
    assert get(server.port, "/v2/models/versioned/versions/1").status == 404
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["2", "3"]
    assert version_folders(cache) == {"models_versioned": ["2", "3"]}
    assert reload(server.port).status == 200  # nothing changed: nothing downloaded again
    assert server.log().count("downloading version 3") == 1


def test_a_download_cut_midway_is_retried_and_never_loaded_partly(
        served: tuple[ServerProcess, Path], store: S3Server, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.cut("/versioned/4/model.bin")
    store.put_model(BUCKET, "versioned", 4, versioned_model(4))
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 4  # the whole model: y = x + 4
    log = server.log()
    assert "s3://models/versioned/4/model.bin: " in log and "retrying in 0.25 s (attempt 2 of 5)" in log
    assert version_folders(cache) == {"models_versioned": ["2", "3", "4"]}


def test_a_corrupted_download_fails_its_md5_and_is_fetched_again(
        served: tuple[ServerProcess, Path], store: S3Server, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.corrupt("/versioned/6/model.bin")
    store.put_model(BUCKET, "versioned", 6, versioned_model(6))
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 6  # y = x + 6: the good copy, not the spoiled one
    retried = [line for line in server.log().splitlines() if "s3://models/versioned/6/model.bin: " in line]
    # botocore checks the CRC32 checksum S3 sends (newer releases), fastserve the MD5 ETag: either catches it.
    assert retried and ("did not match calculated checksum" in retried[0] or "does not match its ETag (MD5)"
                        in retried[0]) and "retrying in 0.25 s" in retried[0], retried
    store.delete_prefix(BUCKET, "versioned/6/")  # the tests below expect versions 2-4
    assert reload(server.port).status == 201
    assert wait_for(lambda: get(server.port, "/v2/models/versioned").json()["versions"] == ["2", "3", "4"])


def test_config_json_on_s3_with_relative_base_path_through_http_proxy(
        store: S3Server, proxy: StoreProxy, tmp_path: Path) -> None:
    store.put_model(BUCKET, "cfg/versioned", 1, versioned_model(1))
    store.put_model(BUCKET, "cfg/add", 1, add_model())
    config = {"model_config_list": [{"config": {"name": "versioned", "base_path": "versioned"}}]}
    store.s3.put_object(Bucket=BUCKET, Key="cfg/config.json", Body=json.dumps(config).encode())
    # Straight to the store's port, but through http_proxy: the proxy must see every request.
    env = clean_env(S3_ENDPOINT=f"http://{store.endpoint}", http_proxy=f"http://127.0.0.1:{proxy.port}")
    before = len(proxy.paths)
    with ServerProcess("--config_path", f"s3://{BUCKET}/cfg/config.json", "--file_system_poll_wait_seconds", "1",
                       "--remote_cache_dir", str(tmp_path), env=env) as server:
        assert infer_latest(server.port) == 1
        config["model_config_list"].append({"config": {"name": "add", "base_path": f"s3://{BUCKET}/cfg/add"}})
        store.s3.put_object(Bucket=BUCKET, Key="cfg/config.json", Body=json.dumps(config).encode())
        assert wait_for(lambda: get(server.port, "/v2/models/add").status == 200, WAIT), server.log()
        body = {"inputs": [{"name": n, "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10} for n in "ab"]}
        reply = post_json(server.port, "/v2/models/add/infer", body)
        assert reply.status == 200 and reply.json()["outputs"][1]["data"] == [2.0] * 10, reply.body
    seen = proxy.paths[before:]
    assert "/models/cfg/config.json" in seen and "/models/cfg/add/1/model.bin" in seen


def test_a_store_stopped_mid_download_keeps_the_served_versions(
        served: tuple[ServerProcess, Path], store: S3Server, proxy: StoreProxy) -> None:
    server, cache = served
    proxy.hold("/versioned/5/model.bin")
    store.put_model(BUCKET, "versioned", 5, versioned_model(5))
    answer: list[Reply] = []
    pending = threading.Thread(target=lambda: answer.append(reload(server.port)))
    pending.start()
    try:
        assert proxy.held.wait(WAIT)
        assert infer_latest(server.port) == 4  # a slow store delays nothing that is served
        assert get(server.port, "/v2/models/versioned").json()["versions"] == ["2", "3", "4"]
        store.stop()
    finally:
        proxy.release()
        pending.join(WAIT)
    assert answer and answer[0].status == 500, answer
    assert infer_latest(server.port) == 4
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["2", "3", "4"]
    assert version_folders(cache) == {"models_versioned": ["2", "3", "4"]}  # no version 5, no partial folder
    errors = [line for line in server.log().splitlines() if "[ERROR]" in line]
    assert any("s3://models/versioned/5/model.bin" in e and "gave up after 5 attempts" in e for e in errors), errors


# Credentials: a store that checks signatures


@pytest.fixture(scope="module")
def secure() -> Iterator[S3Server]:
    server = S3Server(auth=True)
    server.s3.create_bucket(Bucket="secure")
    server.put_model("secure", "m", 1, versioned_model(1))
    try:
        yield server
    finally:
        server.stop()


def serve(secure: S3Server, env: dict[str, str], cache: Path) -> None:
    with ServerProcess("--model_name", "versioned", "--model_path", "s3://secure/m", "--remote_cache_dir",
                       str(cache), env=env) as server:
        assert infer_latest(server.port) == 1
        assert secure.secret not in server.log()


def test_access_key_from_the_environment(secure: S3Server, tmp_path: Path) -> None:
    serve(secure, clean_env(S3_ENDPOINT=secure.endpoint, AWS_ACCESS_KEY_ID=secure.key_id,
                            AWS_SECRET_ACCESS_KEY=secure.secret, AWS_REGION=REGION), tmp_path)


def test_temporary_credentials_with_a_session_token(secure: S3Server, tmp_path: Path) -> None:
    key_id, secret, token = secure.temporary_credentials()
    serve(secure, clean_env(S3_ENDPOINT=secure.endpoint, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                            AWS_SESSION_TOKEN=token), tmp_path)


def test_profile_from_a_credentials_file(secure: S3Server, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[ci]\naws_access_key_id = {secure.key_id}\naws_secret_access_key = {secure.secret}\n")
    serve(secure, clean_env(S3_ENDPOINT=f"http://{secure.endpoint}", AWS_PROFILE="ci",
                            AWS_SHARED_CREDENTIALS_FILE=str(credentials)), tmp_path / "cache")


@pytest.mark.parametrize(("case", "message"), [
    ("wrong secret", "the request signature does not match (wrong AWS_SECRET_ACCESS_KEY)"),
    ("unknown key", "the access key is not known to the store (wrong AWS_ACCESS_KEY_ID)"),
    ("missing bucket", "--model_path: model versioned: the bucket does not exist"),
    ("wrong session token", "the session token is not valid (AWS_SESSION_TOKEN)"),
])
def test_bad_credentials_and_missing_bucket_stop_start_up(secure: S3Server, tmp_path: Path, case: str,
                                                          message: str) -> None:
    key_id, secret, path, token = secure.key_id, secure.secret, "s3://secure/m", ""
    if case == "wrong session token":
        key_id, secret, _ = secure.temporary_credentials()
        token = "FQoGZXIvYXdzEWrongSessionToken0000"
    elif case == "wrong secret":
        secret = "wrong-secret-value-1234"
    elif case == "unknown key":
        key_id, secret = "AKIAUNKNOWNKEY000000", "unknown-secret-value-5678"
    else:
        path = "s3://no-such-bucket/m"
    env = clean_env(S3_ENDPOINT=secure.endpoint, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                    **({"AWS_SESSION_TOKEN": token} if token else {}))
    command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
               "--model_name", "versioned", "--model_path", path, "--remote_cache_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in output, output
    assert secret not in output and secure.secret not in output and (not token or token not in output)
    assert not any(p.name.isdigit() for mirror in tmp_path.iterdir() for p in mirror.iterdir())
