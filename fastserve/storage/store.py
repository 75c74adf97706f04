"""What every remote store offers (list, download, read), and which store serves which scheme.

Rules: a store lists the objects under a folder as RemoteObjects, downloads one to a local file
checking its content, and reads a small one; it raises StorageError (for good) or retries
Transient failures itself (retry.py). The client library of each store is imported only when a
URL of its scheme is first used, and a missing one is reported with the extra to install.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fastserve.storage.location import RemoteURL
from fastserve.storage.retry import StorageError

# scheme -> (the module that must be importable, the extra that installs it)
LIBRARIES = {"s3": ("botocore", "s3"), "gs": ("google.cloud.storage", "gcs"), "az": ("azure.storage.blob", "azure"),
             "azfs": ("azure.storage.fileshare", "azure")}


@dataclass(frozen=True, slots=True)
class RemoteObject:
    key: str  # relative to the listed folder
    size: int
    etag: str  # what identifies this content (S3: ETag, an MD5 when not multipart; GCS: generation; Azure: ETag)
    full: str  # the key in the bucket
    md5: str = ""  # hex MD5 of the content where the store gives it apart from etag (Azure's Content-MD5)


class Store(Protocol):
    def list(self, url: RemoteURL) -> list[RemoteObject]: ...
    def download(self, url: RemoteURL, obj: RemoteObject, dest: Path) -> None: ...
    def read(self, url: RemoteURL) -> bytes: ...


def extra_hint(scheme: str) -> str:
    return f"{scheme}:// paths need the optional extra: pip install 'fastserve[{LIBRARIES[scheme][1]}]'"


def available(scheme: str) -> bool:
    module = LIBRARIES[scheme][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google.cloud) is missing
        return False


_stores: dict[tuple[str, str], Store] = {}
_lock = threading.Lock()


def store_for(url: RemoteURL) -> Store:
    """The shared client for this scheme and endpoint (made once, from the environment at that time)."""
    with _lock:
        store = _stores.get((url.scheme, url.endpoint))
        if store is None:
            if not available(url.scheme):
                raise StorageError(extra_hint(url.scheme))
            if url.scheme == "gs":
                from fastserve.storage.gcs import GCSStore

                store = GCSStore()
            elif url.scheme == "az":
                from fastserve.storage.azure import AzureStore

                store = AzureStore()
            elif url.scheme == "azfs":
                from fastserve.storage.azurefiles import AzureFileStore

                store = AzureFileStore()
            else:
                from fastserve.storage.s3 import S3Store

                store = S3Store(url.endpoint)
            _stores[(url.scheme, url.endpoint)] = store
        return store


# A forked --rest_workers process must not share the parent's open connections: it makes its own clients.
os.register_at_fork(after_in_child=_stores.clear)
