"""A Google Cloud Storage emulator on 127.0.0.1 for the tests (gcp-storage-emulator, in memory).

Started in a child process by the test module that needs it and stopped by its PID; it checks no
credentials (the GCS tests of credentials are about what fastserve does before any request).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import openvino as ov

from tests.childproc import terminate, wait_listening
from tests.modelzoo import save
from tests.serverproc import free_port

START_TIMEOUT = 30.0  # seconds to import and listen (well under one on this VM)
EMULATOR = Path(sys.executable).parent / "gcp-storage-emulator"


class GCSServer:
    def __init__(self, bucket: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(EMULATOR), "start", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--in-memory", "--default-bucket", bucket], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:  # a failure here must not leave the emulator running
            wait_listening(self.proc, self.port, START_TIMEOUT, "the GCS emulator")
            self.bucket = self.client().bucket(bucket)
        except BaseException:
            self.stop()
            raise

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)

    def put_model(self, prefix: str, version: int, model: ov.Model) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = save(model, Path(tmp), version)
            for name in ("model.xml", "model.bin"):
                self.put(f"{prefix}/{version}/{name}", (folder / name).read_bytes())

    def delete_prefix(self, prefix: str) -> None:
        for blob in list(self.client().list_blobs(self.bucket.name, prefix=prefix)):
            self.bucket.blob(blob.name).delete()

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()
