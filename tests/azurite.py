"""Azurite, Azure's storage emulator, on 127.0.0.1 for the tests (its blob service, in memory).

Azurite comes from the npm registry: installed once into .cache/azurite by the first test that
needs it (so `.ci/run` and a developer's plain pytest both get it), and skipped with a clear
reason only where Node.js or npm is missing. Started in a child process, stopped by its PID. It
checks the account key like Azure does (SharedKey signatures).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import openvino as ov
import pytest

from tests.childproc import terminate, wait_listening
from tests.modelzoo import save
from tests.serverproc import free_port

ROOT = Path(__file__).resolve().parent.parent
PREFIX = ROOT / ".cache" / "azurite"
BLOB = PREFIX / "node_modules" / ".bin" / "azurite-blob"
VERSION = "3"  # Azurite's major version; its own API version check is skipped for newer SDKs
INSTALL_TIMEOUT = 600  # seconds for one npm install (about 40 s on this VM)
START_TIMEOUT = 30.0
# Azurite's well-known development account (public, in Azure's docs): not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_blob() -> Path:
    """The azurite-blob launcher, installed on first use; skips the test where Node is missing."""
    if BLOB.exists():
        return BLOB
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("Azurite needs Node.js and npm, which this machine lacks")
    PREFIX.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--no-save", "--silent", "--no-audit", "--no-fund", "--prefix", str(PREFIX),
                    f"azurite@{VERSION}"], check=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
    return BLOB


class Azurite:
    def __init__(self) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(azurite_blob()), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                                      "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:  # a failure here must not leave Azurite running
            wait_listening(self.proc, self.port, START_TIMEOUT, "Azurite")
            from azure.storage.blob import BlobServiceClient

            self.service = BlobServiceClient.from_connection_string(self.connection_string())
        except BaseException:
            self.stop()
            raise

    def connection_string(self, port: int | None = None, key: str = KEY) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{port or self.port}/{ACCOUNT};")

    def put(self, container: str, key: str, data: bytes) -> None:
        self.service.get_container_client(container).upload_blob(key, data, overwrite=True)

    def put_model(self, container: str, prefix: str, version: int, model: ov.Model) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = save(model, Path(tmp), version)
            for name in ("model.xml", "model.bin"):
                self.put(container, f"{prefix}/{version}/{name}", (folder / name).read_bytes())

    def delete_prefix(self, container: str, prefix: str) -> None:
        client = self.service.get_container_client(container)
        for blob in list(client.list_blobs(name_starts_with=prefix)):
            client.delete_blob(blob.name)

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()
