"""Shared fixtures: the test model repository (built in code) and one real server on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modelzoo import write_repository
from tests.serverproc import ServerProcess
from tests.tritonrepo import write_triton_repository


@pytest.fixture(scope="session")
def zoo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.json of the model zoo every end-to-end test uses."""
    return write_repository(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def server(zoo_config: Path) -> Iterator[ServerProcess]:
    """One fastserve process on the zoo for the whole session, REST and gRPC (tests that need their own start one)."""
    with ServerProcess("--config_path", str(zoo_config), grpc=True) as proc:
        yield proc


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """fastserve on tests/tritonrepo.py's models (REST and gRPC), for the Triton-extension tests."""
    config = write_triton_repository(tmp_path_factory.mktemp("triton"))
    with ServerProcess("--config_path", str(config), grpc=True) as proc:
        yield proc
