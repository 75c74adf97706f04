"""The operations flags and config.json's OVMS `monitoring` section become ServerSettings, or exit-2 errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastserve.cli import build_parser, settings_from_args
from fastserve.errors import ConfigError
from fastserve.metrics import DEFAULT_FAMILIES
from fastserve.settings import ServerSettings


def settings(*argv: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(list(argv)))


def config_with(tmp_path: Path, monitoring: object) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [], "monitoring": monitoring}))
    return str(tmp_path / "config.json")


def test_defaults_leave_everything_off_or_bounded() -> None:
    s = settings()
    assert not s.metrics_enable and s.metrics_list == DEFAULT_FAMILIES and not s.server_timing
    assert s.allowed_origins is None and not s.allow_credentials
    assert (s.max_queue_size, s.request_timeout_seconds) == (4096, 30.0)
    assert (s.max_decompressed_size, s.compression_min_size) == (64 << 20, 1024)


def test_flags() -> None:
    s = settings("--metrics_enable", "--metrics_list", "ovms_streams, ovms_infer_req_active", "--server_timing_enable",
                 "--allowed_origins", "https://a.example", "--allowed_methods", "GET,POST", "--allow_credentials",
                 "--max_queue_size", "0", "--request_timeout_seconds", "0.5", "--max_decompressed_size", "1000",
                 "--compression_min_size", "0")
    assert s.metrics_enable and s.metrics_list == ("ovms_streams", "ovms_infer_req_active") and s.server_timing
    assert (s.allowed_origins, s.allowed_methods, s.allow_credentials) == ("https://a.example", "GET,POST", True)
    assert (s.max_queue_size, s.request_timeout_seconds, s.max_decompressed_size, s.compression_min_size) == (
        0, 0.5, 1000, 0)


def test_monitoring_section_as_ovms(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"metrics": {"enable": True, "metrics_list": ["ovms_infer_req_queue_size"]}})
    s = settings("--config_path", path)
    assert s.metrics_enable and s.metrics_list == ("ovms_infer_req_queue_size",)
    s = settings("--config_path", path, "--metrics_list", "ovms_streams")  # the flag wins
    assert s.metrics_list == ("ovms_streams",)


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ({"metrics": {"enable": "yes"}}, "monitoring.metrics.enable: must be true or false"),
        ({"metrics": {"metrics_list": "ovms_streams"}}, "monitoring.metrics.metrics_list: must be a list"),
        ({"metrics": {"metrics_list": ["ovms_nope"]}}, "monitoring.metrics.metrics_list: unknown metric 'ovms_nope'"),
        ({"metrics": {"enable": True, "extra": 1}}, "monitoring.metrics: must be an object"),
    ],
)
def test_bad_monitoring_section(tmp_path: Path, monitoring: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings("--config_path", config_with(tmp_path, monitoring))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics_list", "ovms_bogus"], "--metrics_list: unknown metric 'ovms_bogus'"),
        (["--allowed_origins", "https://a.example\r\nx: y"], "--allowed_origins: must be printable ASCII"),
        (["--allowed_headers", "x-é"], "--allowed_headers: must be printable ASCII"),
        (["--max_queue_size", "-1"], "--max_queue_size: must not be negative"),
        (["--request_timeout_seconds", "-0.1"], "--request_timeout_seconds: must not be negative"),
        (["--compression_min_size", "-5"], "--compression_min_size: must not be negative"),
    ],
)
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(*argv)
