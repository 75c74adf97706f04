"""Mirrors a remote model's version folders into its local cache folder, atomically per version.

Rules: list remotely, pick the versions the model's policy serves, download each missing one
into a hidden `.partial-*` folder next to the others, check every file (size, MD5), write a
manifest of what was downloaded, then rename the folder to its version number: the loader (which
looks only at folders named by a number) never sees a version half downloaded. A version whose
remote files changed since (a different manifest) is downloaded again, so a restart never
serves a stale cache. Versions no longer served are removed only after every wanted one is
there, and nothing is removed when listing or a download fails: the served models stay.
Runs in the loading or reload thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath

from fastserve.settings import ModelSettings, VersionPolicy
from fastserve.storage.location import RemoteURL, parse_url
from fastserve.storage.retry import StorageError
from fastserve.storage.store import RemoteObject, Store, store_for

log = logging.getLogger("fastserve.storage")
MANIFEST = ".fastserve-version.json"
MODEL_FILES = ("model.xml", "model.onnx")
MODEL_SUFFIXES = (".xml", ".onnx")
_warned: set[tuple[str, int]] = set()


def sync_model(settings: ModelSettings) -> None:
    """Bring settings.base_path (the mirror) up to date with settings.remote; ConfigError names the field."""
    where = settings.where("base_path")
    url = parse_url(settings.remote, where)
    try:
        sync(store_for(url), url, settings.base_path, settings.version_policy, settings.name)
    except StorageError as exc:
        raise StorageError(f"{where}: model {settings.name}: {exc}") from None


def sync(store: Store, url: RemoteURL, mirror: Path, policy: VersionPolicy, name: str) -> None:
    versions = remote_versions(store, url, name)
    chosen = policy.select(list(versions))
    mirror.mkdir(parents=True, exist_ok=True)
    _clean_partials(mirror)
    failures: list[StorageError] = []
    for version in chosen:
        files = versions[version]
        wanted = {rel: obj.etag for rel, obj in files.items()}
        if _manifest(mirror / str(version)) == wanted:
            continue
        log.info("model %s: downloading version %d from %s (%d files, %d bytes)", name, version, url,
                 len(files), sum(o.size for o in files.values()))
        try:
            _download_version(store, url, mirror, version, files)
        except StorageError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
    for entry in list(mirror.iterdir()):
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) not in chosen:
            log.info("model %s: version %s is no longer served from %s: removed from the cache", name, entry.name, url)
            _remove(mirror, entry)


def remote_versions(store: Store, url: RemoteURL, name: str) -> dict[int, dict[str, RemoteObject]]:
    """Version -> its files (path inside the version folder -> object), for versions with a model file."""
    if url.key.endswith(MODEL_SUFFIXES):  # base_path names one model file: version 1, with its .bin
        file_name = PurePosixPath(url.key).name
        keep = {file_name, PurePosixPath(file_name).with_suffix(".bin").name}
        files = {o.key: o for o in store.list(url.parent()) if o.key in keep}
        return {1: files} if file_name in files else {}
    grouped: dict[int, dict[str, RemoteObject]] = {}
    for obj in store.list(url):
        first, _, rest = obj.key.partition("/")
        if not first.isdigit() or int(first) <= 0 or not rest:
            continue  # as OVMS: only positive integer folders are versions
        parts = PurePosixPath(rest).parts
        if ".." in parts or rest.startswith("/"):
            raise StorageError(f"{url}: the object {obj.full!r} has a path that leaves its folder")
        grouped.setdefault(int(first), {})[rest] = obj
    found = {}
    for version, files in sorted(grouped.items()):
        top = [rel for rel in files if "/" not in rel]
        models = [rel for rel in top if rel in MODEL_FILES] or [rel for rel in top if rel.endswith(MODEL_SUFFIXES)]
        if len(models) == 1 or any(rel in MODEL_FILES for rel in top):
            found[version] = files
        elif (str(url), version) not in _warned:
            _warned.add((str(url), version))
            log.warning("model %s: %s/%d has no single model.xml or model.onnx; skipped", name, url, version)
    return found


def _download_version(store: Store, url: RemoteURL, mirror: Path, version: int,
                      files: dict[str, RemoteObject]) -> None:
    partial = mirror / f".partial-{version}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        partial.mkdir()
        folder = url.parent() if url.key.endswith(MODEL_SUFFIXES) else url
        for rel, obj in files.items():
            dest = partial.joinpath(*PurePosixPath(rel).parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            store.download(folder, obj, dest)
        (partial / MANIFEST).write_text(json.dumps({rel: obj.etag for rel, obj in files.items()}, sort_keys=True))
        target = mirror / str(version)
        if target.exists():  # changed remotely: swap the new files in, then drop the old ones
            _remove(mirror, target)
        try:
            partial.rename(target)
        except OSError:  # another worker process put the same version in place first
            shutil.rmtree(partial, ignore_errors=True)
    except OSError as exc:  # the cache folder itself: full disk, permissions
        shutil.rmtree(partial, ignore_errors=True)
        raise StorageError(f"cannot write the model cache {mirror}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _manifest(folder: Path) -> dict[str, str] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _remove(mirror: Path, folder: Path) -> None:
    """Rename away first (one atomic step for the loader), then delete; served versions are in memory."""
    gone = mirror / f".gone-{folder.name}-{secrets.token_hex(4)}"
    try:
        folder.rename(gone)
    except OSError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def _clean_partials(mirror: Path) -> None:
    """Left by a process that died mid-download (never by a live one: its pid is in the name)."""
    for entry in mirror.iterdir():
        if entry.name.startswith(".gone-"):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".partial-"):
            try:
                pid = int(entry.name.split("-")[2])
            except (IndexError, ValueError):
                pid = 0
            if pid != os.getpid() and not _alive(pid):
                shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
