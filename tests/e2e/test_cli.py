"""The command line in real processes: `python -m fastserve` and the `fastserve` console script,
--help/--version, exit code 2 with one stderr line for bad configurations, the single-model
flags, and OVMS's gRPC flags accepted with a warning.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import fastserve
from tests.modelzoo import save, versioned_model
from tests.rawhttp import get, post_json
from tests.serverproc import ServerProcess

CONSOLE_SCRIPT = Path(sys.executable).parent / "fastserve"
OVMS_FLAGS = ["--config_path", "--model_name", "--model_path", "--rest_port", "--rest_bind_address", "--nireq",
              "--target_device", "--plugin_config", "--model_version_policy", "--shape", "--batch_size", "--layout",
              "--log_level", "--log_path", "--cache_dir", "--port", "--grpc_workers", "--help", "--version"]
TIMEOUT = 60  # seconds; a start-up error takes about one (importing OpenVINO)


def fastserve_command(entry: str) -> list[str]:
    return [str(CONSOLE_SCRIPT)] if entry == "script" else [sys.executable, "-m", "fastserve"]


def run(*args: str, entry: str = "module") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*fastserve_command(entry), *args], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cli") / "versioned"
    for version in (1, 2):
        save(versioned_model(version), base, version)
    return base


@pytest.mark.parametrize("entry", ["module", "script"])
def test_help_lists_the_ovms_flags(entry: str) -> None:
    assert entry == "module" or CONSOLE_SCRIPT.is_file(), f"no console script at {CONSOLE_SCRIPT}"
    result = run("--help", entry=entry)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: fastserve ")
    missing = [flag for flag in OVMS_FLAGS if flag not in result.stdout]
    assert not missing, missing


@pytest.mark.parametrize("entry", ["module", "script"])
def test_version(entry: str) -> None:
    result = run("--version", entry=entry)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"fastserve {fastserve.__version__}\n", "")


def assert_config_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit code 2, nothing on stdout, ONE line on stderr (no traceback) containing every part."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastserve: error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_invalid_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"model_config_list": [{"config": {"name": "m", "base_path": "m"}}],}')
    assert_config_error(run("--config_path", str(path)), str(path), "not valid JSON")


def test_unknown_model_key(tmp_path: Path, versioned: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_config_list": [{"config": {"name": "m", "base_path": str(versioned),
                                                                  "num_versions": 2}}]}))
    message = f"{path}: model_config_list[0].config: unknown key 'num_versions'"
    assert_config_error(run("--config_path", str(path)), message)


def test_policy_matching_nothing(versioned: Path) -> None:
    result = run("--model_name", "m", "--model_path", str(versioned), "--model_version_policy",
                 '{"specific": {"versions": [3]}}', entry="script")
    assert_config_error(result, "--model_version_policy: model m: specific [3] matches none of the versions on disk")


def test_model_name_without_model_path() -> None:
    assert_config_error(run("--model_name", "m"), "--model_name needs --model_path")


def test_flag_syntax_error() -> None:
    result = run("--rest_port", "eighty")
    assert result.returncode == 2 and "argument --rest_port: invalid int value: 'eighty'" in result.stderr


@pytest.mark.parametrize(("flags", "parts"), [
    (["--plugin_config", '{"NO_SUCH_PROPERTY": 1}'], ["Unsupported property NO_SUCH_PROPERTY", "--plugin_config"]),
    (["--target_device", "NOPE"], ["cannot compile", "for NOPE", "--target_device"]),
    (["--shape", "(1,2,3)"], ["--shape: (1,2,3) has 3 dims, but input x of model m has 2"]),
])
def test_model_that_cannot_compile_exits_2_naming_it(versioned: Path, flags: list[str], parts: list[str]) -> None:
    """Found while loading (after listening): the server stops with one error line naming the model."""
    result = run("--model_name", "m", "--model_path", str(versioned), "--rest_port", "0",
                 "--rest_bind_address", "127.0.0.1", *flags)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "model loading failed:" in errors[0], result.stderr
    for part in [*parts, "model m"]:
        assert part in errors[0], (part, errors[0])


@pytest.fixture(scope="module")
def single(versioned: Path) -> Iterator[ServerProcess]:
    with ServerProcess("--model_name", "m", "--model_path", str(versioned), "--model_version_policy",
                       '{"all": {}}', "--nireq", "2") as proc:
        yield proc


def test_single_model_flags_serve_the_model(single: ServerProcess) -> None:
    assert get(single.port, "/v2/models/m").json()["versions"] == ["1", "2"]
    doc = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3]}]}
    for version in (1, 2):
        reply = post_json(single.port, f"/v2/models/m/versions/{version}/infer", doc)
        assert reply.status == 200, reply.body
        np.testing.assert_array_equal(reply.json()["outputs"][0]["data"], np.arange(4) + version)
    assert "nireq 2" in single.log()


def test_port_in_use_exits_1(versioned: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--model_name", "m", "--model_path", str(versioned), "--rest_port", str(port),
                     "--rest_bind_address", "127.0.0.1")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1 port {port}" in errors[0], result.stderr
    assert "address already in use" in errors[0].lower()
