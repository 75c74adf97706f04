"""KServe's Python SDK clients (kserve.InferenceRESTClient, protocol v2, and InferenceGRPCClient),
unchanged, against the real server: every call they make (tests/kserve_client.py runs them in a
child process; docs/triton.md lists what each one sends and reads)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.modelzoo import save, slow_compile_model
from tests.rawhttp import get
from tests.serverproc import ServerProcess
from tests.slowwork import slow_compile_ops

# Looked up, not imported: kserve's protobuf messages must stay out of this process (tritonclient's are here).
if importlib.util.find_spec("kserve") is None:
    pytest.skip("kserve is in the test extras: pip install -e '.[test]'", allow_module_level=True)

SUM = [float(i + 2) for i in range(10)]  # a = 0..9, b = 2
DIFF = [float(i - 2) for i in range(10)]


@pytest.fixture(scope="module")
def calls(server: ServerProcess) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tests.kserve_client", server.host, server.grpc_host],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_rest_health_calls_read_the_json_bodies(calls: dict[str, Any]) -> None:
    rest = calls["rest"]
    # is_server_live / is_server_ready read response.json()["live"/"ready"]: an empty body crashed them
    assert rest["is_server_live"] == {"value": True}
    assert rest["is_server_ready"] == {"value": True}
    # is_model_ready reads only the status (2xx: True)
    assert rest["is_model_ready"] == {"value": True}
    assert rest["is_model_ready_unknown"] == {"value": False}


def test_rest_health_while_the_first_load_runs(tmp_path: Path) -> None:
    # A model sized to compile for 20 s here: the calls below take a few seconds at most.
    save(slow_compile_model([1, 8], slow_compile_ops(20.0, (1, 8))), tmp_path / "slow")
    server = ServerProcess("--model_name", "slow", "--model_path", str(tmp_path / "slow"), wait_ready=False)
    try:
        assert get(server.port, "/v2/health/ready").status == 503
        done = subprocess.run([sys.executable, "-m", "tests.kserve_client", "--health", server.host],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        found = json.loads(done.stdout)
        assert get(server.port, "/v2/health/ready").status == 503  # still loading after the calls
    finally:
        server.stop()
    assert found["is_server_live"] == {"value": True}  # live while loading, with its {"live": true} body
    # 503 with {"ready": false}: the client raises on the status, as against KServe's own server
    assert found["is_server_ready"]["error"] == "HTTPStatusError"
    assert "503" in found["is_server_ready"]["message"]


def test_rest_infer_json_and_binary(calls: dict[str, Any]) -> None:
    rest = calls["rest"]
    assert rest["infer_dict"] == {"model_name": "add", "outputs": {"sum": SUM, "diff": DIFF}}
    for binary in (False, True):
        assert rest[f"infer_request_binary_{binary}"] == {"id": "kserve-1", "outputs": {"sum": SUM, "diff": DIFF}}


def test_rest_errors_reach_the_caller_with_our_message(calls: dict[str, Any]) -> None:
    rest = calls["rest"]
    # The client copies {"error": ...} into its HTTPStatusError only for content-type exactly application/json.
    assert rest["infer_unknown_model"]["error"] == "HTTPStatusError"
    assert rest["infer_unknown_model"]["message"].startswith("Model with requested name is not found, '404 Not Found'")
    assert rest["infer_bad_input"]["message"].startswith("Invalid JSON structure, missing inputs")
    assert "'400 Bad Request'" in rest["infer_bad_input"]["message"]
    # explain exists only in protocol v1: the client refuses before sending anything
    assert rest["explain"] == {"error": "UnsupportedProtocol", "message": "Unsupported protocol v2."}


def test_grpc_client(calls: dict[str, Any]) -> None:
    grpc = calls["grpc"]
    assert grpc["is_server_live"] == grpc["is_server_ready"] == grpc["is_model_ready"] == {"value": True}
    assert grpc["infer"] == {"id": "kserve-1", "outputs": {"sum": SUM, "diff": DIFF}}
