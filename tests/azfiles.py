"""An emulator of the subset of the Azure Files REST API that fastserve's azfs:// store uses, for the tests.

Azurite (tests/azurite.py) has no File service, so this is a small HTTP server of our own that
Azure's real SDK (azure-storage-file-share) talks to over 127.0.0.1, in a child process stopped
by its PID. It emulates only what reading a model repository needs, read-only:
- List Directories and Files (GET ?restype=directory&comp=list, with marker/maxresults paging
  and each entry's ETag), Get File Properties (HEAD), Get File (GET with a range, and the range's
  Content-MD5 when x-ms-range-get-content-md5 asks for it; 416 for a range of an empty file);
- Shared Key authorization, checked as Azure does: the request's signature (HMAC-SHA256 over
  the canonical string of verb, standard headers, x-ms-* headers and resource) must match the
  account key, else 403 AuthenticationFailed;
- Azure's error replies (x-ms-error-code and an XML body): ShareNotFound, ResourceNotFound,
  ParentNotFound, AuthenticationFailed; any other request gets 501, so an SDK call this
  emulator does not know shows up as a failure instead of a wrong answer.
Each share is a folder under the root given at start: the tests write files there (atomically,
with os.replace) and the emulator serves them; a file's ETag follows its size and mtime.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape, quoteattr

from tests.childproc import terminate, wait_listening

# Azure's documented development account (the one Azurite uses too): not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 30.0
MAX_MD5_RANGE = 4 << 20  # Azure computes a range's MD5 only for ranges up to 4 MiB
SIGNED_HEADERS = ("Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type", "Date",
                  "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range")


def string_to_sign(method: str, raw_path: str, query: str, headers: dict[str, str], account: str) -> str:
    """Azure's Shared Key canonical string (version 2015-02-21 and later: Content-Length 0 is empty)."""
    standard = [headers.get(name.lower(), "") for name in SIGNED_HEADERS]
    if standard[2] == "0":
        standard[2] = ""
    ms = sorted((name, value.strip()) for name, value in headers.items() if name.startswith("x-ms-"))
    resource = f"/{account}{raw_path}"
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name.lower(), []).append(value)
    for name in sorted(params):
        resource += f"\n{name}:{','.join(sorted(params[name]))}"
    return "\n".join([method, *standard]) + "\n" + "".join(f"{n}:{v}\n" for n, v in ms) + resource


def signature(key: str, text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()).decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        if not self._authorized(parts.path, parts.query, headers):
            return
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if len(segments) < 2 or segments[0] != self.server.account:
            return self._error(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        share = self.server.root / segments[1]
        if not share.is_dir():
            return self._error(404, "ShareNotFound", "The specified share does not exist.")
        path = share.joinpath(*segments[2:])
        if ".." in segments or not path.resolve().is_relative_to(share.resolve()):
            return self._error(400, "InvalidResourceName", "The specified resource name contains invalid characters.")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if self.command == "GET" and query.get("restype") == "directory" and query.get("comp") == "list":
            return self._list(segments[1], "/".join(segments[2:]), path, query)
        if self.command in ("GET", "HEAD") and not query.get("restype") and not query.get("comp"):
            return self._file(path, headers)
        self._error(501, "NotImplementedByEmulator", f"tests/azfiles.py does not emulate {self.command} {parts.path}"
                    f"?{parts.query}")

    def _authorized(self, raw_path: str, query: str, headers: dict[str, str]) -> bool:
        given = headers.get("authorization", "")
        canonical = string_to_sign(self.command, raw_path, query, headers, self.server.account)
        expected = f"SharedKey {self.server.account}:{signature(self.server.key, canonical)}"
        if "x-ms-date" not in headers and "date" not in headers or "x-ms-version" not in headers:
            self._error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not "
                        "specified (x-ms-date and x-ms-version).")
            return False
        if not hmac.compare_digest(given, expected):
            self._error(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value "
                        "of Authorization header is formed correctly including the signature.")
            return False
        return True

    def _list(self, share: str, directory: str, path: Path, query: dict[str, str]) -> None:
        if not path.is_dir():
            parent_missing = directory and not path.parent.is_dir()
            code = "ParentNotFound" if parent_missing else "ResourceNotFound"
            return self._error(404, code, "The specified parent path does not exist." if parent_missing
                               else "The specified resource does not exist.")
        prefix = query.get("prefix", "")
        names = sorted(p.name for p in path.iterdir() if p.name.startswith(prefix) and not p.name.startswith(".tmp"))
        start = names.index(query["marker"]) if query.get("marker") in names else 0
        size = min(int(query.get("maxresults") or self.server.page_size), self.server.page_size)
        page, rest = names[start:start + size], names[start + size:]
        entries = []
        for name in page:
            item = path / name
            stat = item.stat()
            kind = "Directory" if item.is_dir() else "File"
            length = "" if item.is_dir() else f"<Content-Length>{stat.st_size}</Content-Length>"
            entries.append(f"<{kind}><Name>{escape(name)}</Name><Properties>{length}"
                           f"<Last-Modified>{formatdate(stat.st_mtime, usegmt=True)}</Last-Modified>"
                           f"<Etag>{escape(etag(item))}</Etag></Properties></{kind}>")
        endpoint = f"http://{self.headers.get('Host', '127.0.0.1')}/{self.server.account}"
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                f"<EnumerationResults ServiceEndpoint={quoteattr(endpoint)} ShareName={quoteattr(share)} "
                f"DirectoryPath={quoteattr(directory)}><Prefix>{escape(prefix)}</Prefix>"
                f"<Entries>{''.join(entries)}</Entries><NextMarker>{escape(rest[0]) if rest else ''}</NextMarker>"
                "</EnumerationResults>").encode()
        self._reply(200, {"Content-Type": "application/xml"}, body)

    def _file(self, path: Path, headers: dict[str, str]) -> None:
        if not path.is_file():
            missing_parent = not path.parent.is_dir()
            return self._error(404, "ParentNotFound" if missing_parent else "ResourceNotFound",
                               "The specified parent path does not exist." if missing_parent
                               else "The specified resource does not exist.")
        data = path.read_bytes()
        meta = {"ETag": etag(path), "Last-Modified": formatdate(path.stat().st_mtime, usegmt=True),
                "x-ms-type": "File", "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        wanted = headers.get("x-ms-range") or headers.get("range")
        if self.command == "HEAD":
            return self._reply(200, {**meta, "Content-Length": str(len(data))}, b"", length=len(data))
        if not wanted:
            return self._reply(200, meta, data)
        first_text, _, last_text = wanted.removeprefix("bytes=").partition("-")
        first = int(first_text)
        if first >= len(data):
            return self._error(416, "InvalidRange", "The range specified is invalid for the current size of the "
                               "resource.", {"Content-Range": f"bytes */{len(data)}"})
        last = min(int(last_text) if last_text else len(data) - 1, len(data) - 1)
        chunk = data[first:last + 1]
        meta["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        if headers.get("x-ms-range-get-content-md5", "").lower() == "true":
            if len(chunk) > MAX_MD5_RANGE:
                return self._error(400, "OutOfRangeInput", "The range's MD5 is given for ranges up to 4 MiB only.")
            meta["Content-MD5"] = base64.b64encode(hashlib.md5(chunk).digest()).decode()
        self._reply(206, meta, chunk)

    def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(message)}\n'
                f"RequestId:{uuid.uuid4()}</Message></Error>").encode()
        headers = {"x-ms-error-code": code, "Content-Type": "application/xml", **(extra or {})}
        self._reply(status, headers, b"" if self.command == "HEAD" else body)

    def _reply(self, status: int, headers: dict[str, str], body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-version", self.headers.get("x-ms-version", ""))
        self.end_headers()
        if body:
            self.wfile.write(body)


def etag(path: Path) -> str:
    stat = path.stat()
    return f'"0x{stat.st_mtime_ns:X}{stat.st_size:X}"'


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, root: Path, account: str, key: str, page_size: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.root, self.account, self.key, self.page_size = root, account, key, page_size


class AzureFiles:
    """The emulator in a child process, serving the shares under `root` (one folder each)."""

    def __init__(self, root: Path, page_size: int = 5000) -> None:
        from tests.serverproc import free_port

        self.root, self.port = root, free_port()
        self.log = root.parent / f"azfiles-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.azfiles", "--port", str(self.port), "--root", str(root),
                 "--page-size", str(page_size)], cwd=Path(__file__).resolve().parent.parent, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_listening(self.proc, self.port, START_TIMEOUT, "the Azure Files emulator")
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"the Azure Files emulator did not start: {self.log.read_text()}") from None

    def connection_string(self, port: int | None = None, key: str = KEY) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
                f"FileEndpoint=http://127.0.0.1:{port or self.port}/{ACCOUNT};")

    def put(self, share: str, path: str, data: bytes) -> None:
        target = self.root / share / path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".tmp-{target.name}")
        temporary.write_bytes(data)
        os.replace(temporary, target)

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines()

    def stop(self) -> None:
        terminate(self.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--account", default=ACCOUNT)
    parser.add_argument("--key", default=KEY)
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args()
    server = EmulatorServer(args.port, args.root, args.account, args.key, args.page_size)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
