"""--config_path s3://bucket/dir/config.json: a local copy, fetched again at every reload poll.

Rules: the copy is written atomically (temp file + rename), so config.py and the reloader read
a whole file or the previous one. Relative base_paths in it resolve against its remote folder
(config_root), as local ones resolve against the config file's folder. The copies this process
made are remembered here by their local path; everything else is a local file.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from fastserve.storage.location import RemoteURL, cache_root, parse_url
from fastserve.storage.retry import StorageError
from fastserve.storage.store import store_for

_origins: dict[Path, RemoteURL] = {}


def fetch_config(text: str, where: str = "--config_path") -> Path:
    """Download the remote config.json once; the local path stands for it from then on."""
    url = parse_url(text, where)
    digest = hashlib.sha256(str(url).encode()).hexdigest()[:12]
    local = cache_root() / f"config-{digest}" / (url.key.rpartition("/")[2] or "config.json")
    _origins[local] = url
    try:
        refresh_config(local)
    except OSError as exc:
        raise StorageError(f"{where}: {exc.strerror}") from None
    return local


def refresh_config(path: Path) -> None:
    """Fetch the remote file again (no-op for a local file); OSError with a clear strerror on failure."""
    url = _origins.get(path)
    if url is None:
        return
    try:
        data = store_for(url).read(url)
    except StorageError as exc:
        raise OSError(errno.EIO, str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def config_root(path: Path) -> RemoteURL | None:
    """The remote folder of a fetched config.json (relative base paths resolve against it), else None."""
    url = _origins.get(path)
    return url.parent() if url is not None else None


def origin(path: Path) -> str | None:
    url = _origins.get(path)
    return str(url) if url is not None else None
