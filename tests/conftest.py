"""Shared fixtures: the test model repository (built in code) and one real server on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fastserve.grpc.flags import DEFAULT_TRANSPORT, TRANSPORTS
from tests.modelzoo import write_repository
from tests.serverproc import ServerProcess
from tests.tritonrepo import write_triton_repository


@pytest.fixture(scope="session")
def zoo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.json of the model zoo every end-to-end test uses."""
    return write_repository(tmp_path_factory.mktemp("zoo"))


class ZooServers:
    """The zoo's server per gRPC transport, each started on first use and kept for the session."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.started: dict[str, ServerProcess] = {}

    def get(self, transport: str) -> ServerProcess:
        if transport not in self.started:
            self.started[transport] = ServerProcess("--config_path", str(self.config), grpc=True,
                                                    grpc_transport=transport)
        return self.started[transport]

    def stop(self) -> None:
        for proc in self.started.values():
            proc.stop()


@pytest.fixture(scope="session")
def zoo_servers(zoo_config: Path) -> Iterator[ZooServers]:
    servers = ZooServers(zoo_config)
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def server(zoo_servers: ZooServers) -> ServerProcess:
    """One fastserve process on the zoo for the whole session, REST and gRPC (tests that need their own start one)."""
    return zoo_servers.get(DEFAULT_TRANSPORT)


@pytest.fixture(scope="session", params=TRANSPORTS)
def grpc_transport(request: pytest.FixtureRequest) -> str:
    """Each gRPC test runs on both transports (tests/e2e/test_grpc*.py take their server from `grpc_server`)."""
    return request.param


@pytest.fixture(scope="session")
def grpc_server(zoo_servers: ZooServers, grpc_transport: str) -> ServerProcess:
    return zoo_servers.get(grpc_transport)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """fastserve on tests/tritonrepo.py's models (REST and gRPC), for the Triton-extension tests."""
    config = write_triton_repository(tmp_path_factory.mktemp("triton"))
    with ServerProcess("--config_path", str(config), grpc=True) as proc:
        yield proc
