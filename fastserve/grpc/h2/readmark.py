"""SO_RCVLOWAT while the rest of a large DATA frame is on its way: the loop wakes once for it.

A 600 KB tensor arrives in several bursts, and each burst woke the loop just to buffer it: on
a machine whose cores all run OpenVINO, every such wake-up preempts one of its threads, and
the whole inference waits for that thread. Nothing after an incomplete frame can be handled
before the frame is complete (TCP keeps the order), and its sender already holds the flow-
control window for all of it, so waiting for its last byte delays nothing and cannot stall.
The kernel still wakes the loop at end of file and under memory pressure.
"""

from __future__ import annotations

import socket
from typing import Any

FROM_BYTES = 64 * 1024  # a smaller rest is not worth the two setsockopt calls
MAX_BYTES = 4 << 20  # Linux caps the mark at half the largest receive buffer anyway
_OPTION = getattr(socket, "SO_RCVLOWAT", None)


class ReadMark:
    __slots__ = ("sock", "level")

    def __init__(self, transport: Any) -> None:
        self.sock = transport.get_extra_info("socket") if _OPTION is not None else None
        self.level = 1  # the kernel's default: wake at the first byte

    def follow(self, frame_left: int) -> None:
        """Called after each read with what the frame being received still lacks (0: none)."""
        want = min(frame_left, MAX_BYTES) if frame_left >= FROM_BYTES else 1
        if want == self.level or self.sock is None:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _OPTION, want)
        except OSError:  # not a TCP socket, or a kernel without it: wake per burst, as before
            self.sock = None
            return
        self.level = want
