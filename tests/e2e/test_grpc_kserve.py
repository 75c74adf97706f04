"""KServe's own gRPC client (kserve.InferenceGRPCClient) against the real server, unchanged.

It runs in a child process (tests/clients/kserve_grpc.py): kserve and tritonclient both register
the `inference.*` protobuf messages in the default pool and cannot share one process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def server(grpc_server: ServerProcess) -> ServerProcess:
    """The zoo's server on each gRPC transport in turn (tests/conftest.py: grpc_transport)."""
    return grpc_server


def test_kserve_grpc_client_health_infer_and_errors(server: ServerProcess) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.clients.kserve_grpc", server.grpc_host], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["live"] is True and found["ready"] is True and found["add_ready"] is True
    code, message = found["unknown"]
    assert code == "NOT_FOUND" and message == "Model with requested name is not found"
    a = np.arange(10, dtype=np.float32)
    infer = found["infer"]
    assert (infer["id"], infer["model"], infer["version"]) == ("k-1", "add", "1")
    assert infer["outputs"] == {"sum": [(a + 0.5).tolist()]}  # only the output asked for
    assert found["typed"] == {"sum": [(a + 0.5).tolist()], "diff": [(a - 0.5).tolist()]}
    code, message = found["mixed"]
    assert code == "INVALID_ARGUMENT" and "raw_input_contents" in message, message
    code, message = found["bad"]
    assert code == "INVALID_ARGUMENT" and message.startswith("Invalid input shape"), message
