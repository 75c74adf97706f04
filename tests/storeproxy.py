"""An HTTP proxy on 127.0.0.1 between fastserve and a local store, that the test steers.

It forwards each request on its own upstream connection (reverse proxy for S3_ENDPOINT, or a
forward proxy for http_proxy when the request line has an absolute URL), and can, for requests
whose path ends with a given suffix:
- cut(): send the response head and half the body, then close: a network failure mid-download;
- corrupt(): send the whole response with one byte of its body changed: content that does not
  match its checksum;
- hold(): keep the request until release(): a store that answers slowly, or never (stop the store
  meanwhile and release: the upstream is gone, the client's connection is closed unanswered);
- stall(): send the response head and half the body, then hold the rest back until release(): a
  store that stalls mid-response (the client's read timeout fires; `stalled` counts them).
A CONNECT request (https through https_proxy) is tunnelled as is to its target, which is
recorded in `connects`; what goes through the tunnel is encrypted, so none of the above applies.
Only 127.0.0.1 is ever reached: a CONNECT to any other host is recorded and refused (403).
Every request path is recorded, and every Authorization header. Threads are daemons; close() stops accepting.
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit


class StoreProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.paths: list[str] = []
        self.authorizations: list[str] = []
        self.cuts: dict[str, int] = {}  # suffix -> how many more responses to cut
        self.corrupts: dict[str, int] = {}  # suffix -> how many more responses to corrupt
        self.holds: dict[str, threading.Event] = {}
        self.stalls: dict[str, threading.Event] = {}
        self.stalled = 0  # responses stalled so far
        self.connects: list[str] = []  # host:port of every CONNECT
        self.held = threading.Event()  # set when a request is being held
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, suffix: str, times: int = 1) -> None:
        with self.lock:
            self.cuts[suffix] = times

    def corrupt(self, suffix: str, times: int = 1) -> None:
        with self.lock:
            self.corrupts[suffix] = times

    def hold(self, suffix: str) -> None:
        with self.lock:
            self.holds[suffix] = threading.Event()
            self.held.clear()

    def stall(self, suffix: str) -> None:
        with self.lock:
            self.stalls[suffix] = threading.Event()

    def release(self) -> None:
        with self.lock:
            for event in [*self.holds.values(), *self.stalls.values()]:
                event.set()
            self.holds.clear()
            self.stalls.clear()

    def close(self) -> None:
        self.release()
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                if not self._forward(conn, reader, head):
                    return

    def _forward(self, conn: socket.socket, reader: object, head: bytes) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        if method == "CONNECT":
            return self._tunnel(conn, target)
        host, port = "127.0.0.1", self.upstream_port
        if target.startswith("http://"):  # forward-proxy form: GET http://host:port/path HTTP/1.1
            parts = urlsplit(target)
            host, port = parts.hostname or host, parts.port or 80
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = [line for line in lines[1:] if line and not line.lower().startswith(("connection:", "proxy-"))]
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
        body = reader.read(length) if length else b""  # type: ignore[attr-defined]
        path = target.split("?", 1)[0]
        with self.lock:
            self.paths.append(path)
            auth = [h.partition(":")[2].strip() for h in headers if h.lower().startswith("authorization:")]
            self.authorizations += auth
            hold = next((e for s, e in self.holds.items() if path.endswith(s)), None)
            cut = next((s for s, n in self.cuts.items() if n > 0 and path.endswith(s) and method == "GET"), None)
            if cut is not None:
                self.cuts[cut] -= 1
            spoil = next((s for s, n in self.corrupts.items() if n > 0 and path.endswith(s) and method == "GET"), None)
            if spoil is not None:
                self.corrupts[spoil] -= 1
            stall = next((e for s, e in self.stalls.items() if path.endswith(s) and method == "GET"), None)
        if hold is not None:
            self.held.set()
            hold.wait(60)
        try:
            with socket.create_connection((host, port), timeout=30) as upstream:
                request = "\r\n".join([f"{method} {target} {version}", *headers, "Connection: close", "", ""])
                upstream.sendall(request.encode("latin-1") + body)
                response = b""
                while chunk := upstream.recv(1 << 16):
                    response += chunk
        except OSError:
            return False  # the store is gone: close the client's connection unanswered
        response_head, _, response_body = response.partition(b"\r\n\r\n")
        kept = [line for line in response_head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        out = b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"
        if cut is not None or stall is not None:
            conn.sendall(out + response_body[: len(response_body) // 2])
            if stall is not None:
                with self.lock:
                    self.stalled += 1
                stall.wait(60)
            return False
        if spoil is not None and response_body:
            middle = len(response_body) // 2
            response_body = response_body[:middle] + bytes([response_body[middle] ^ 0xFF]) + response_body[middle + 1:]
        conn.sendall(out + (b"" if method == "HEAD" else response_body))
        return False  # one request per connection keeps the bookkeeping simple

    def _tunnel(self, conn: socket.socket, target: str) -> bool:
        host, _, port = target.rpartition(":")
        with self.lock:
            self.connects.append(target)
        if host != "127.0.0.1":  # the tests talk to nothing beyond this machine
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except (OSError, ValueError):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with upstream:
            back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            back.start()
            _pipe(conn, upstream)
            back.join(30)
        return False


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until `source` ends, then end `sink`'s sending side too."""
    try:
        source.settimeout(None)
        while chunk := source.recv(1 << 16):
            sink.sendall(chunk)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _read_head(reader: object) -> bytes | None:
    head = b""
    while True:
        line = reader.readline(65536)  # type: ignore[attr-defined]
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return head.rstrip(b"\r\n") if head else None
        head += line
