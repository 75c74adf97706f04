"""Azure Blob Storage (az://container/path) through azure-storage-blob, configured as OVMS is.

Rules: the account and its key come from AZURE_STORAGE_CONNECTION_STRING (azurecommon.py; its
BlobEndpoint may point at Azurite or another endpoint). The SDK's own retries are off: retry.py
retries every call and logs why (except that the SDK itself asks again, up to 3 times, for the
rest of a download cut short, logging "Incomplete download."). A download asks for the listed ETag (an object replaced
meanwhile fails instead of mixing uploads) and is checked against its size and, where the blob
has one, its Content-MD5. No message carries the account key or a SAS token (azurecommon.scrub()).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastserve.storage.azurecommon import connection_string, guard, make_client
from fastserve.storage.location import RemoteURL
from fastserve.storage.retry import Transient, with_retries
from fastserve.storage.store import RemoteObject

MISSING = "the container or blob does not exist"


class AzureStore:
    def __init__(self) -> None:
        from azure.storage.blob import BlobServiceClient

        self.service = make_client(BlobServiceClient.from_connection_string, connection_string("az"))
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
        return guard(fn, MISSING, self.account, *args)
