"""Google Cloud Storage (gs://bucket/path) through google-cloud-storage, configured as OVMS is.

Rules: credentials from GOOGLE_APPLICATION_CREDENTIALS (a service-account key file), else the
application-default credentials (gcloud, GKE's metadata server), else anonymous (public buckets).
STORAGE_EMULATOR_HOST points the client at an emulator (the library's own variable), without
credentials unless a key file is given. The library's own retries are off: retry.py retries every call and logs why.
Downloads are checked by the library against the object's MD5 and here against its size, and
ask for the listed generation, so an object replaced meanwhile fails instead of mixing uploads.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from fastserve.storage.location import RemoteURL
from fastserve.storage.retry import CONNECT_TIMEOUT, StorageError, Transient, read_timeout, with_retries
from fastserve.storage.store import RemoteObject

log = logging.getLogger("fastserve.storage")


def scrub(text: str) -> str:
    """Access tokens never reach a message (the key file's path is no secret; its content is)."""
    return re.sub(r"(Bearer\s+|access_token=)[A-Za-z0-9._~+/=-]+", r"\1***", text)


class GCSStore:
    def __init__(self) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.storage = storage
        self.timeout = (CONNECT_TIMEOUT, read_timeout())  # (connect, read) seconds
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "fastserve"
        key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        try:
            if key_file:  # OVMS's variable first; with STORAGE_EMULATOR_HOST too (the library then sends it there)
                self.client = storage.Client.from_service_account_json(key_file)
                self.credentials = "GOOGLE_APPLICATION_CREDENTIALS"
            elif os.environ.get("STORAGE_EMULATOR_HOST"):
                self.client = storage.Client(project=project, credentials=AnonymousCredentials())
                self.credentials = "emulator"
            else:
                self.client, self.credentials = self._default(storage, project)
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot use GOOGLE_APPLICATION_CREDENTIALS={key_file}: {scrub(str(exc))}") from None

    @staticmethod
    def _default(storage: Any, project: str) -> tuple[Any, str]:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, found = google.auth.default()
        except DefaultCredentialsError:
            return storage.Client.create_anonymous_client(), "anonymous"
        return storage.Client(project=found or project, credentials=credentials), "application default"

    def list(self, url: RemoteURL) -> list[RemoteObject]:
        return with_retries(str(url), lambda: self._guard(self._list, url))

    def _list(self, url: RemoteURL) -> list[RemoteObject]:
        prefix = f"{url.key}/" if url.key else ""
        found = []
        for blob in self.client.list_blobs(url.bucket, prefix=prefix, retry=None, timeout=self.timeout):
            if not blob.name.endswith("/"):
                found.append(RemoteObject(blob.name[len(prefix):], int(blob.size or 0), str(blob.generation),
                                          blob.name))
        if not found and url.key:  # base_path may name one model file
            blob = self.client.bucket(url.bucket).get_blob(url.key, retry=None, timeout=self.timeout)
            if blob is not None:
                found.append(RemoteObject(url.key.rpartition("/")[2], int(blob.size or 0), str(blob.generation),
                                          url.key))
        return found

    def download(self, url: RemoteURL, obj: RemoteObject, dest: Path) -> None:
        what = f"gs://{url.bucket}/{obj.full}"
        with_retries(what, lambda: self._guard(self._download, url.bucket, obj, dest))

    def _download(self, bucket: str, obj: RemoteObject, dest: Path) -> None:
        blob = self.client.bucket(bucket).blob(obj.full)
        blob.download_to_filename(str(dest), if_generation_match=int(obj.etag), checksum="md5", retry=None,
                                  timeout=self.timeout)
        size = dest.stat().st_size
        if size != obj.size:
            raise Transient(f"got {size} of {obj.size} bytes")

    def read(self, url: RemoteURL) -> bytes:
        blob = self.client.bucket(url.bucket).blob(url.key)
        return with_retries(str(url), lambda: self._guard(blob.download_as_bytes, retry=None, timeout=self.timeout))

    def _guard(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the library, turning its exceptions into Transient or StorageError with a clear text."""
        from google.api_core import exceptions as gex
        from google.auth import exceptions as aex

        try:
            return fn(*args, **kwargs)
        except gex.NotFound as exc:
            raise StorageError(f"the bucket or object does not exist ({_text(exc)})") from None
        except (gex.Forbidden, gex.Unauthorized) as exc:
            raise StorageError(f"access denied (wrong credentials, or no permission to list and read) "
                               f"({_text(exc)}; credentials: {self.credentials})") from None
        except (gex.PreconditionFailed, gex.TooManyRequests, gex.ServerError) as exc:
            raise Transient(f"the store answered {_text(exc)}") from None
        except gex.GoogleAPICallError as exc:
            raise StorageError(f"the store refused the request: {_text(exc)}") from None
        except aex.RefreshError as exc:
            raise StorageError(f"the credentials were refused ({_text(exc)}; credentials: {self.credentials})") \
                from None
        except Exception as exc:  # connection errors, timeouts, a cut stream, an MD5 mismatch
            if _is_transient(exc):
                raise Transient(_text(exc)) from None
            raise

    def __repr__(self) -> str:
        return f"GCSStore({self.credentials})"


def _is_transient(exc: BaseException) -> bool:
    import requests
    from google.auth.exceptions import TransportError
    from google.cloud.storage import exceptions as storage_errors

    corrupt: tuple[type, ...] = (storage_errors.DataCorruption,)
    try:  # the library may raise its older media package's class
        from google.resumable_media.common import DataCorruption

        corrupt += (DataCorruption,)
    except ImportError:
        pass
    if isinstance(exc, corrupt):  # the MD5 did not match: download again
        return True
    return isinstance(exc, requests.RequestException | TransportError | OSError | ConnectionError)


def _text(exc: BaseException) -> str:
    return scrub(str(exc)).rstrip(".") or type(exc).__name__
