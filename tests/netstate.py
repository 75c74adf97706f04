"""What the kernel knows about a test's TCP connections: whether the server has read all that a
client sent. Tests wait on this instead of sleeping "long enough for the server to read it".
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

TCP_TABLE = Path("/proc/net/tcp")


def _endpoint(address: tuple[str, int]) -> str:
    """/proc/net/tcp's form of an IPv4 address and port: the address as a host-order hex word."""
    host, port = address
    return f"{int.from_bytes(socket.inet_aton(host), 'little'):08X}:{port:04X}"


CLOSE_WAIT = 0x08  # the socket's kernel has the peer's FIN


def _queues() -> dict[tuple[str, str], tuple[int, int, int]]:
    """(local, remote) -> (bytes sent and not yet acknowledged, bytes received and not yet read, state)."""
    table = {}
    for line in TCP_TABLE.read_text().splitlines()[1:]:
        fields = line.split()
        tx, rx = (int(v, 16) for v in fields[4].split(":"))
        table[(fields[1], fields[2])] = (tx, rx, int(fields[3], 16))
    return table


def read_by_server(sock: socket.socket) -> bool:
    """True when every byte this client socket sent has reached the server process (not only its
    kernel): nothing in flight from us, nothing waiting in the server socket's receive queue."""
    mine, theirs = _endpoint(sock.getsockname()), _endpoint(sock.getpeername())
    table = _queues()
    ours, server_side = table.get((mine, theirs)), table.get((theirs, mine))
    return ours is not None and server_side is not None and ours[0] == 0 and server_side[1] == 0


def wait_read_by_server(socks: list[socket.socket], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(read_by_server(sock) for sock in socks):
        if time.monotonic() > deadline:
            raise AssertionError("the server did not read all that was sent")
        time.sleep(0.005)


def wait_server_got_fin(sock: socket.socket, timeout: float = 60.0) -> None:
    """After shutdown(SHUT_WR): until the server's side of the connection has our FIN."""
    mine, theirs = _endpoint(sock.getsockname()), _endpoint(sock.getpeername())
    deadline = time.monotonic() + timeout
    while (entry := _queues().get((theirs, mine))) is None or entry[2] != CLOSE_WAIT:
        if time.monotonic() > deadline:
            raise AssertionError("the server's side never received our FIN")
        time.sleep(0.005)
