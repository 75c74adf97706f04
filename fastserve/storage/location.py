"""Remote URLs (s3://bucket/path, azfs://share/path) and the local cache folders they are mirrored into.

Rules: pure string and path work, no network, no client library (the CLI parses paths before
anything heavy is imported). The cache root is one per process, set by the CLI from
--remote_cache_dir before any path is parsed; forked workers and the reload thread inherit it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastserve.errors import ConfigError

# Schemes fastserve reads (store.py has their client libraries), and OVMS's others.
SCHEMES = ("s3", "gs", "az", "azfs")
KNOWN_ELSEWHERE = ("azure",)  # "azure://" appears in OVMS's source comments only: azfs:// is its file-share form
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

_cache_root: Path | None = None


@dataclass(frozen=True, slots=True)
class RemoteURL:
    scheme: str
    bucket: str
    key: str  # no leading or trailing '/'; "" for the bucket's root
    endpoint: str = ""  # OVMS's s3://host:port/bucket/path form names the endpoint in the URL

    def __str__(self) -> str:
        host = f"{self.endpoint}/" if self.endpoint else ""
        return f"{self.scheme}://{host}{self.bucket}/{self.key}".rstrip("/")

    def join(self, relative: str) -> RemoteURL:
        """A path relative to this one taken as a folder (a relative base_path in a remote config.json)."""
        parts = [p for p in f"{self.key}/{relative}".split("/") if p and p != "."]
        out: list[str] = []
        for part in parts:
            if part == "..":
                if out:
                    out.pop()
            else:
                out.append(part)
        return RemoteURL(self.scheme, self.bucket, "/".join(out), self.endpoint)

    def parent(self) -> RemoteURL:
        return RemoteURL(self.scheme, self.bucket, self.key.rpartition("/")[0], self.endpoint)


def scheme_of(text: str) -> str | None:
    found = _SCHEME.match(text)
    return found.group(1).lower() if found else None


def parse_url(text: str, where: str) -> RemoteURL:
    """s3://bucket/path, gs://bucket/path, or OVMS's s3://host:port/bucket/path; ConfigError naming `where`."""
    scheme = scheme_of(text)
    if scheme in KNOWN_ELSEWHERE:
        raise ConfigError(f"{where}: {scheme}:// is not a storage URL; use azfs://share/path (Azure Files), "
                          "az://container/path (Azure Blob Storage), s3://, gs:// or a local path")
    if scheme not in SCHEMES:
        raise ConfigError(f"{where}: unknown storage {scheme}:// (s3://, gs://, az://bucket/path or azfs://share/path, "
                          "or a local path)")
    rest = text[len(scheme) + 3:]
    endpoint = ""
    first, _, tail = rest.partition("/")
    if scheme == "s3" and re.fullmatch(r"[0-9A-Za-z.-]+:\d{1,5}", first):  # s3://minio:9000/bucket/path, as OVMS
        endpoint, rest = first, tail
    bucket, _, key = rest.partition("/")
    if scheme == "azfs":  # Azure share names: 3-63 lowercase letters, digits and single hyphens
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", bucket):
            raise ConfigError(f"{where}: {text!r}: {bucket!r} is not a share name (azfs://share/path)")
        return RemoteURL(scheme, bucket, key.strip("/"))
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"{where}: {text!r}: {bucket!r} is not a bucket name ({scheme}://bucket/path)")
    return RemoteURL(scheme, bucket, key.strip("/"), endpoint)


def set_cache_root(path: Path | None) -> None:
    global _cache_root
    _cache_root = path


def cache_root() -> Path:
    """--remote_cache_dir, or a per-user folder in the temp dir (kept between runs: versions are reused)."""
    if _cache_root is not None:
        return _cache_root
    return Path(tempfile.gettempdir()) / f"fastserve-remote-{os.getuid()}"


def mirror_path(url: RemoteURL) -> Path:
    """The local folder a remote base path is mirrored into: readable name, hash of the full URL."""
    digest = hashlib.sha256(str(url).encode()).hexdigest()[:12]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{url.bucket}_{url.key}")[-60:]
    return cache_root() / f"{tail}-{digest}"
