"""Azure Files (azfs://share/path) through azure-storage-file-share, configured as OVMS is.

Rules: the account and its key come from AZURE_STORAGE_CONNECTION_STRING (azurecommon.py; a
FileEndpoint= in it points at another endpoint). A share has real directories, so a folder is
listed one directory level per request, walking down (as OVMS's AzureStorageFile does); the
listing asks for each file's ETag. A download asks the SDK to check every range it gets against
the range's MD5 (validate_content), then checks the file's ETag against the listed one (a file
replaced meanwhile is downloaded again instead of mixing contents), its size, and the file's
stored Content-MD5 where it has one. The SDK's own retries are off: retry.py retries every call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastserve.storage.azurecommon import connection_string, guard, make_client
from fastserve.storage.location import RemoteURL
from fastserve.storage.retry import StorageError, Transient, with_retries
from fastserve.storage.store import RemoteObject

MISSING = "the share, directory or file does not exist"
# Error codes of a folder that is not there (an empty listing, as a missing prefix on S3) or is a file.
NOT_A_FOLDER = ("ResourceNotFound", "ParentNotFound", "ResourceTypeMismatch")


class AzureFileStore:
    def __init__(self) -> None:
        from azure.storage.fileshare import ShareServiceClient

        self.service = make_client(ShareServiceClient.from_connection_string, connection_string("azfs"))
        self.account = self.service.account_name

    def list(self, url: RemoteURL) -> list[RemoteObject]:
        return with_retries(str(url), lambda: self._guard(self._list, url))

    def _list(self, url: RemoteURL) -> list[RemoteObject]:
        from azure.core.exceptions import HttpResponseError

        share = self.service.get_share_client(url.bucket)
        found: list[RemoteObject] = []
        pending = [url.key]
        while pending:
            folder = pending.pop()
            try:
                entries = list(share.get_directory_client(folder).list_directories_and_files(include=["Etag"]))
            except HttpResponseError as exc:
                if folder != url.key or getattr(exc, "error_code", None) not in NOT_A_FOLDER:
                    raise
                return self._single_file(share, url)  # base_path may name one model file
            for entry in entries:
                full = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_directory:
                    pending.append(full)
                else:
                    key = full[len(url.key) + 1:] if url.key else full
                    found.append(RemoteObject(key, int(entry.size or 0), _etag(entry.etag), full))
        return found

    def _single_file(self, share: Any, url: RemoteURL) -> list[RemoteObject]:
        from azure.core.exceptions import ResourceNotFoundError

        if not url.key:
            return []
        try:
            props = share.get_file_client(url.key).get_file_properties()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ShareNotFound":
                raise
            return []
        return [RemoteObject(url.key.rpartition("/")[2], int(props.size or 0), _etag(props.etag), url.key,
                             _md5(props))]

    def download(self, url: RemoteURL, obj: RemoteObject, dest: Path) -> None:
        what = f"azfs://{url.bucket}/{obj.full}"
        with_retries(what, lambda: self._guard(self._download, url.bucket, obj, dest))

    def _download(self, share: str, obj: RemoteObject, dest: Path) -> None:
        client = self.service.get_share_client(share).get_file_client(obj.full)
        stored_md5 = obj.md5 or _md5(client.get_file_properties())
        stream = client.download_file(validate_content=True)
        if _etag(stream.properties.etag) != obj.etag:
            raise Transient("the file changed since it was listed")
        md5, size = hashlib.md5(usedforsecurity=False), 0
        with dest.open("wb") as out:
            for chunk in stream.chunks():
                out.write(chunk)
                md5.update(chunk)
                size += len(chunk)
        if size != obj.size:
            raise Transient(f"got {size} of {obj.size} bytes")
        if stored_md5 and md5.hexdigest() != stored_md5:
            raise Transient("the content does not match its Content-MD5")

    def read(self, url: RemoteURL) -> bytes:
        if not url.key:
            raise StorageError(f"{url}: names a share, not a file")
        client = self.service.get_share_client(url.bucket).get_file_client(url.key)

        def work() -> bytes:
            return client.download_file(validate_content=True).readall()

        return with_retries(str(url), lambda: self._guard(work))

    def _guard(self, fn: Any, *args: Any) -> Any:
        return guard(fn, MISSING, self.account, *args)


def _etag(value: Any) -> str:
    return str(value or "").strip('"')


def _md5(props: Any) -> str:
    md5 = props.content_settings.content_md5 if props.content_settings else None
    return bytes(md5).hex() if md5 else ""
