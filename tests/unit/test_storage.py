"""fastserve/storage without a store: URLs, cache folders, retries, scrubbing, the missing-extra error.

Everything that talks to a store is tested against a real local S3 server in tests/e2e/test_s3.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fastserve import config
from fastserve.errors import ConfigError
from fastserve.storage import azurecommon, location, s3, store
from fastserve.storage.location import RemoteURL, mirror_path, parse_url
from fastserve.storage.retry import ATTEMPTS, READ_TIMEOUT, StorageError, Transient, read_timeout, with_retries


@pytest.mark.parametrize(("text", "expected"), [
    ("s3://bucket/models/resnet", RemoteURL("s3", "bucket", "models/resnet")),
    ("s3://bucket/models/resnet/", RemoteURL("s3", "bucket", "models/resnet")),
    ("s3://bucket", RemoteURL("s3", "bucket", "")),
    ("S3://bucket/m", RemoteURL("s3", "bucket", "m")),
    ("s3://minio.local:9000/bucket/m", RemoteURL("s3", "bucket", "m", "minio.local:9000")),  # OVMS's form
    ("az://container/models/m", RemoteURL("az", "container", "models/m")),
    ("azfs://share/models/m", RemoteURL("azfs", "share", "models/m")),  # Azure Files, OVMS's form
    ("azfs://my-share-1", RemoteURL("azfs", "my-share-1", "")),
])
def test_urls(text: str, expected: RemoteURL) -> None:
    assert parse_url(text, "--model_path") == expected


def test_relative_paths_join_the_remote_folder() -> None:
    folder = RemoteURL("s3", "bucket", "configs/prod")
    assert str(folder.join("resnet")) == "s3://bucket/configs/prod/resnet"
    assert str(folder.join("../models/./resnet")) == "s3://bucket/configs/models/resnet"
    assert str(RemoteURL("s3", "bucket", "configs/config.json").parent()) == "s3://bucket/configs"


def test_each_url_has_its_own_mirror_under_the_cache_root(tmp_path: Path) -> None:
    location.set_cache_root(tmp_path)
    try:
        one, two = mirror_path(parse_url("s3://b1x/m", "x")), mirror_path(parse_url("s3://b2x/m", "x"))
        assert one.parent == two.parent == tmp_path and one != two and one.name.startswith("b1x_m-")
    finally:
        location.set_cache_root(None)


def test_transient_failures_back_off_then_give_up() -> None:
    waits: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient("connection reset")
        return "ok"

    assert with_retries("s3://b/k", flaky, sleep=waits.append) == "ok" and waits == [0.25, 0.5]
    waits.clear()

    def down() -> None:
        raise Transient("connection refused")

    with pytest.raises(StorageError, match=r"^s3://b/k: connection refused \(gave up after 5 attempts\)$"):
        with_retries("s3://b/k", down, sleep=waits.append)
    assert len(waits) == ATTEMPTS - 1 and waits == [0.25, 0.5, 1.0, 2.0]


def test_a_failure_that_repeats_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    def down() -> None:
        raise Transient("connection refused")

    for _ in range(2):  # two polls of a store that stays down
        with pytest.raises(StorageError):
            with_retries("s3://b/again", down, sleep=lambda _: None)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "s3://b/again" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_permanent_failures_are_not_retried() -> None:
    waits: list[float] = []

    def denied() -> None:
        raise StorageError("access denied")

    with pytest.raises(StorageError, match="access denied"):
        with_retries("s3://b/k", denied, sleep=waits.append)
    assert waits == []


def test_secrets_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sEcReT/value+1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-abc-123")
    assert s3.scrub("sig for sEcReT/value+1 with token-abc-123") == "sig for *** with ***"
    assert s3.scrub("Failed to connect to proxy URL: http://me:pa55@proxy:3128") == (
        "Failed to connect to proxy URL: http://***@proxy:3128")


@pytest.mark.parametrize("text", ["azfs://ab/m", "azfs://a--b/m", "azfs://-ab/m", "azfs://a.b/m"])
def test_share_names_follow_azure_rules(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a share name"):
        parse_url(text, "--model_path")


def test_azure_secrets_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(azurecommon.VARIABLE, "AccountName=a;AccountKey=c2VjcmV0S2V5;EndpointSuffix=x")
    assert azurecommon.scrub("bad AccountKey=c2VjcmV0S2V5; key c2VjcmV0S2V5 in ?sv=1&sig=abc%2F") == (
        "bad AccountKey=***; key *** in ?sv=1&sig=***")


@pytest.mark.parametrize(("value", "endpoint"), [
    ("minio.local:9000", "http://minio.local:9000"),  # OVMS: host:port is plain http
    ("http://minio.local:9000", "http://minio.local:9000"),
    ("https://s3.example.internal:8443", "https://s3.example.internal:8443"),
])
def test_s3_endpoint_forms(monkeypatch: pytest.MonkeyPatch, value: str, endpoint: str) -> None:
    pytest.importorskip("botocore")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("S3_ENDPOINT", value)
    client = s3.S3Store().client  # no request is made
    assert client.meta.endpoint_url == endpoint
    assert client.meta.config.s3["addressing_style"] == "path"


def test_the_read_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    monkeypatch.delenv("FASTSERVE_STORAGE_READ_TIMEOUT_S", raising=False)
    assert read_timeout() == READ_TIMEOUT == 30.0
    monkeypatch.setenv("FASTSERVE_STORAGE_READ_TIMEOUT_S", " 2.5 ")
    assert read_timeout() == 2.5
    assert s3.S3Store().client.meta.config.read_timeout == 2.5  # what botocore's client was made with
    for bad in ("0", "-1", "abc", "nan", "inf", "3601"):
        monkeypatch.setenv("FASTSERVE_STORAGE_READ_TIMEOUT_S", bad)
        with pytest.raises(StorageError, match=f"^FASTSERVE_STORAGE_READ_TIMEOUT_S='{bad}': must be a number of "
                                               "seconds above 0, at most 3600$"):
            read_timeout()


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(store, "available", lambda scheme: False)
    with pytest.raises(ConfigError, match=r"^--model_path: s3:// paths need the optional extra: "
                                          r"pip install 'fastserve\[s3\]'$"):
        config.model_from_flags("m", "s3://bucket/m")
    with pytest.raises(ConfigError, match=r"^--model_path: azfs:// paths need the optional extra: "
                                          r"pip install 'fastserve\[azure\]'$"):
        config.model_from_flags("m", "azfs://share/m")
