"""s3:// over TLS, through https_proxy, and from a store that stalls, against real local servers.

An https S3 server on 127.0.0.1 (moto's, with a certificate signed by a CA the test makes,
tests/tlscert.py) is trusted through AWS_CA_BUNDLE, reached through https_proxy (a CONNECT
tunnel in tests/storeproxy.py that records its targets) or around it (no_proxy), and refused
with a clear start-up error when its CA is not given. A plain store behind tests/storeproxy.py
stalls mid-response on a held-back event, with the read timeout shrunk to 2 s
(FASTSERVE_STORAGE_READ_TIMEOUT_S): retried with backoff, then given up, version 1 serving throughout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_hot_reload import wait_for
from tests.e2e.test_s3 import version_folders
from tests.modelzoo import versioned_model
from tests.rawhttp import Reply, get
from tests.remoteserved import infer_latest, reload
from tests.s3store import S3Server, clean_env
from tests.serverproc import ServerProcess
from tests.storeproxy import StoreProxy
from tests.tlscert import ServerCertificate, make_certificate

pytest.importorskip("moto", reason="the test extra installs moto: pip install -e '.[test]'")

BUCKET = "models"
TIMEOUT = 60  # seconds for a start-up that must fail
WAIT = 30.0
READ_TIMEOUT = "2"  # seconds: the stalled store is given up after 5 attempts, ~14 s
SECRET = "secret-that-must-not-show-1234"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_store(cert: ServerCertificate) -> Iterator[S3Server]:
    server = S3Server(tls=cert)
    server.s3.create_bucket(Bucket=BUCKET)
    server.make_public(BUCKET)
    server.put_model(BUCKET, "versioned", 1, versioned_model(1))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(tls_store: S3Server) -> Iterator[StoreProxy]:
    relay = StoreProxy(tls_store.port)
    yield relay
    relay.close()


def serve_once(env: dict[str, str], cache: Path) -> str:
    """Start fastserve on s3://models/versioned with `env`, infer version 1, return the log."""
    with ServerProcess("--model_name", "versioned", "--model_path", f"s3://{BUCKET}/versioned",
                       "--file_system_poll_wait_seconds", "0", "--remote_cache_dir", str(cache), env=env) as server:
        assert infer_latest(server.port) == 1
        return server.log()


def test_an_https_endpoint_trusted_through_aws_ca_bundle(tls_store: S3Server, cert: ServerCertificate,
                                                         tmp_path: Path) -> None:
    assert tls_store.url.startswith("https://")
    env = clean_env(S3_ENDPOINT=tls_store.url, AWS_CA_BUNDLE=str(cert.ca), AWS_ACCESS_KEY_ID="testing-key",
                    AWS_SECRET_ACCESS_KEY=SECRET)
    log = serve_once(env, tmp_path)
    assert f"downloading version 1 from s3://{BUCKET}/versioned" in log and SECRET not in log


def start_up_failure(env: dict[str, str], cache: Path) -> str:
    command = [sys.executable, "-m", "fastserve", "--rest_port", "0", "--rest_bind_address", "127.0.0.1",
               "--model_name", "versioned", "--model_path", f"s3://{BUCKET}/versioned", "--remote_cache_dir",
               str(cache)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert SECRET not in output, output
    mirrors = list(cache.iterdir()) if cache.exists() else []
    assert not any(p.name.isdigit() for mirror in mirrors for p in mirror.iterdir())
    return output


@pytest.mark.parametrize("case", ["no CA bundle", "another CA"])
def test_an_untrusted_certificate_stops_start_up_at_once(tls_store: S3Server, tmp_path: Path, case: str) -> None:
    env = clean_env(S3_ENDPOINT=tls_store.url, AWS_ACCESS_KEY_ID="testing-key", AWS_SECRET_ACCESS_KEY=SECRET)
    if case == "another CA":
        (tmp_path / "other").mkdir()
        env["AWS_CA_BUNDLE"] = str(make_certificate(tmp_path / "other").ca)
    output = start_up_failure(env, tmp_path / "cache")
    assert "--model_path: model versioned: the store's TLS certificate is not trusted (" in output, output
    assert "certificate verify failed" in output and "name the CA that signed it with AWS_CA_BUNDLE=" in output
    assert "retrying" not in output  # a certificate does not become trusted by asking again


def test_a_missing_ca_bundle_file_is_named(tls_store: S3Server, tmp_path: Path) -> None:
    env = clean_env(S3_ENDPOINT=tls_store.url, AWS_CA_BUNDLE=str(tmp_path / "nowhere.pem"),
                    AWS_SECRET_ACCESS_KEY=SECRET, AWS_ACCESS_KEY_ID="testing-key")
    output = start_up_failure(env, tmp_path / "cache")
    assert f"AWS_CA_BUNDLE={tmp_path / 'nowhere.pem'}: no such file" in output, output


def test_https_goes_through_https_proxy_as_a_connect_tunnel(tls_store: S3Server, cert: ServerCertificate,
                                                            proxy: StoreProxy, tmp_path: Path) -> None:
    before = len(proxy.connects)
    env = clean_env(S3_ENDPOINT=tls_store.url, AWS_CA_BUNDLE=str(cert.ca),
                    https_proxy=f"http://127.0.0.1:{proxy.port}")
    serve_once(env, tmp_path)
    # The list, model.xml and model.bin requests (a tunnel may carry several). Any other target is
    # refused by the proxy: `import openvino` sends a usage event to OpenVINO's telemetry host.
    tunnels = proxy.connects[before:]
    assert tls_store.endpoint in tunnels, tunnels


def test_no_proxy_reaches_the_store_directly(tls_store: S3Server, cert: ServerCertificate, proxy: StoreProxy,
                                             tmp_path: Path) -> None:
    before = (len(proxy.connects), len(proxy.paths))
    env = clean_env(S3_ENDPOINT=tls_store.url, AWS_CA_BUNDLE=str(cert.ca),
                    https_proxy=f"http://127.0.0.1:{proxy.port}", no_proxy="127.0.0.1")
    serve_once(env, tmp_path)
    assert tls_store.endpoint not in proxy.connects[before[0]:] and len(proxy.paths) == before[1]


# A store that stalls mid-response: the proxy sends half of model.bin, then holds the rest back.


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, StoreProxy, S3Server, Path]]:
    store = S3Server()
    relay = StoreProxy(store.port)
    try:
        store.s3.create_bucket(Bucket=BUCKET)
        store.make_public(BUCKET)
        store.put_model(BUCKET, "versioned", 1, versioned_model(1))
        cache = tmp_path_factory.mktemp("stallcache")
        env = clean_env(S3_ENDPOINT=f"127.0.0.1:{relay.port}", FASTSERVE_STORAGE_READ_TIMEOUT_S=READ_TIMEOUT)
        with ServerProcess("--model_name", "versioned", "--model_path", f"s3://{BUCKET}/versioned",
                           "--file_system_poll_wait_seconds", "0", "--remote_cache_dir", str(cache),
                           "--log_level", "DEBUG", env=env) as server:
            yield server, relay, store, cache
    finally:
        relay.close()
        store.stop()


def test_a_store_stalling_mid_response_is_retried_then_given_up(
        stalling: tuple[ServerProcess, StoreProxy, S3Server, Path]) -> None:
    server, relay, store, cache = stalling
    assert infer_latest(server.port) == 1
    relay.stall("/versioned/2/model.bin")
    store.put_model(BUCKET, "versioned", 2, versioned_model(2))
    answer: list[Reply] = []
    pending = threading.Thread(target=lambda: answer.append(reload(server.port)))
    pending.start()
    try:
        assert wait_for(lambda: relay.stalled >= 1, WAIT)
        assert infer_latest(server.port) == 1  # the stalled download delays nothing that is served
        pending.join(TIMEOUT)
        assert answer and answer[0].status == 500, answer
        assert relay.stalled == 5  # every attempt read half the file, then waited out the read timeout
    finally:
        relay.release()
        pending.join(WAIT)
    assert infer_latest(server.port) == 1
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["1"]
    assert version_folders(cache) == {"models_versioned": ["1"]}  # no version 2, no partial folder
    what = f"s3://{BUCKET}/versioned/2/model.bin: the store sent nothing for 2 s (the read timeout; " \
           "FASTSERVE_STORAGE_READ_TIMEOUT_S changes it)"
    log = server.log()
    for delay, attempt in (("0.25", 2), ("0.5", 3), ("1", 4), ("2", 5)):
        assert f"{what}; retrying in {delay} s (attempt {attempt} of 5)" in log, log[-3000:]
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    assert any(what in e and "gave up after 5 attempts" in e for e in errors), errors
    # The store answering again: the next reload downloads version 2 whole and serves it.
    assert reload(server.port).status == 201
    assert infer_latest(server.port) == 2
    assert version_folders(cache) == {"models_versioned": ["2"]}  # the default policy: the latest only


def test_the_read_timeout_setting_must_be_positive(tmp_path: Path) -> None:
    env = clean_env(S3_ENDPOINT="127.0.0.1:9", FASTSERVE_STORAGE_READ_TIMEOUT_S="0", AWS_SECRET_ACCESS_KEY=SECRET)
    output = start_up_failure(env, tmp_path)
    assert "FASTSERVE_STORAGE_READ_TIMEOUT_S='0': must be a number of seconds above 0" in output, output
