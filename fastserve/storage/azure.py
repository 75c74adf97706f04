"""Azure Blob Storage (az://container/path) through azure-storage-blob, configured as OVMS is.

Rules: the account and its key come from AZURE_STORAGE_CONNECTION_STRING (OVMS's only way; its
BlobEndpoint may point at Azurite or another endpoint). The SDK's own retries are off: retry.py
retries every call and logs why (except that the SDK itself asks again, up to 3 times, for the
rest of a download cut short, logging "Incomplete download."). A download asks for the listed ETag (an object replaced
meanwhile fails instead of mixing uploads) and is checked against its size and, where the blob
has one, its Content-MD5. No message carries the account key or a SAS token (scrub()).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from fastserve.storage.location import RemoteURL
from fastserve.storage.retry import StorageError, Transient, with_retries
from fastserve.storage.store import RemoteObject

VARIABLE = "AZURE_STORAGE_CONNECTION_STRING"
# A connection must open within 5 s; a read may stall 30 s (a slow store), then the call is retried.
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 30


def scrub(text: str) -> str:
    """The connection string's secrets (AccountKey, SharedAccessSignature, sig=) never reach a message."""
    text = re.sub(r"(AccountKey=|SharedAccessSignature=)[^;\s]+", r"\1***", text, flags=re.IGNORECASE)
    text = re.sub(r"([?&]sig=)[^&\s]+", r"\1***", text)
    key = re.search(r"AccountKey=([^;]+)", os.environ.get(VARIABLE, ""), flags=re.IGNORECASE)
    return text.replace(key.group(1), "***") if key else text


class AzureStore:
    def __init__(self) -> None:
        from azure.storage.blob import BlobServiceClient

        # azure-core logs every request and its headers at INFO: kept quiet, warnings still show.
        logging.getLogger("azure").setLevel(logging.WARNING)
        connection = os.environ.get(VARIABLE)
        if not connection:
            raise StorageError(f"az:// paths need {VARIABLE} (the storage account's connection string)")
        try:
            self.service = BlobServiceClient.from_connection_string(
                connection, retry_total=0, connection_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
        except ValueError as exc:
            raise StorageError(f"{VARIABLE} is not a valid connection string: {scrub(str(exc))}") from None
        self.account = self.service.account_name

    def list(self, url: RemoteURL) -> list[RemoteObject]:
        return with_retries(str(url), lambda: self._guard(self._list, url))

    def _list(self, url: RemoteURL) -> list[RemoteObject]:
        container = self.service.get_container_client(url.bucket)
        prefix = f"{url.key}/" if url.key else ""
        found = [self._object(blob, blob.name[len(prefix):])
                 for blob in container.list_blobs(name_starts_with=prefix) if not blob.name.endswith("/")]
        if not found and url.key:  # base_path may name one model file
            from azure.core.exceptions import ResourceNotFoundError

            try:
                blob = container.get_blob_client(url.key).get_blob_properties()
            except ResourceNotFoundError:
                return []
            found.append(self._object(blob, url.key.rpartition("/")[2]))
        return found

    @staticmethod
    def _object(blob: Any, key: str) -> RemoteObject:
        md5 = blob.content_settings.content_md5 if blob.content_settings else None
        return RemoteObject(key, int(blob.size or 0), str(blob.etag).strip('"'), blob.name,
                            bytes(md5).hex() if md5 else "")

    def download(self, url: RemoteURL, obj: RemoteObject, dest: Path) -> None:
        what = f"az://{url.bucket}/{obj.full}"
        with_retries(what, lambda: self._guard(self._download, url.bucket, obj, dest))

    def _download(self, container: str, obj: RemoteObject, dest: Path) -> None:
        from azure.core import MatchConditions

        stream = self.service.get_container_client(container).download_blob(
            obj.full, etag=obj.etag, match_condition=MatchConditions.IfNotModified)
        md5, size = hashlib.md5(usedforsecurity=False), 0
        with dest.open("wb") as out:
            for chunk in stream.chunks():
                out.write(chunk)
                md5.update(chunk)
                size += len(chunk)
        if size != obj.size:
            raise Transient(f"got {size} of {obj.size} bytes")
        if obj.md5 and md5.hexdigest() != obj.md5:
            raise Transient("the content does not match its Content-MD5")

    def read(self, url: RemoteURL) -> bytes:
        container = self.service.get_container_client(url.bucket)
        return with_retries(str(url), lambda: self._guard(lambda: container.download_blob(url.key).readall()))

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Call the SDK, turning its exceptions into Transient or StorageError with a clear, scrubbed text."""
        from azure.core import exceptions as aex

        try:
            return fn(*args)
        except aex.ResourceNotFoundError as exc:
            raise StorageError(f"the container or blob does not exist ({_code(exc)}; account {self.account})") \
                from None
        except aex.ClientAuthenticationError as exc:
            raise StorageError(f"the request was refused: wrong account key in {VARIABLE}, or no permission "
                               f"({_code(exc)}; account {self.account})") from None
        except aex.ResourceModifiedError as exc:
            raise Transient(f"the blob changed while being read ({_code(exc)})") from None
        except aex.HttpResponseError as exc:
            status = int(getattr(exc, "status_code", 0) or 0)
            if status >= 500 or status in (408, 429):
                raise Transient(f"the store answered {status} ({_code(exc)})") from None
            if status == 403:
                raise StorageError(f"the request was refused: wrong account key in {VARIABLE}, or no permission "
                                   f"({_code(exc)}; account {self.account})") from None
            raise StorageError(f"the store refused the request: {status} ({_code(exc)})") from None
        except (aex.ServiceRequestError, aex.ServiceResponseError, aex.AzureError, OSError) as exc:
            raise Transient(_text(exc)) from None


def _code(exc: Any) -> str:
    code = getattr(exc, "error_code", None)
    first = _text(exc).splitlines()[0] if _text(exc) else ""
    return f"{code}: {first}" if code else first


def _text(exc: BaseException) -> str:
    return scrub(str(exc)).rstrip(".") or type(exc).__name__

