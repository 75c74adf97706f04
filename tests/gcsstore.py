"""A Google Cloud Storage emulator on 127.0.0.1 for the tests (gcp-storage-emulator, in memory).

Started in a child process by the test module that needs it and stopped by its PID; it checks no
credentials (the GCS tests of credentials are about what fastserve does before any request).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openvino as ov

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
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the GCS emulator did not start") from None
                time.sleep(0.05)
        self.bucket = self.client().bucket(bucket)

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
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
