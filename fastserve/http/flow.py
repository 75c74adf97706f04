"""FlowControl: the transport plumbing under HttpProtocol (flow control, writes, lingering close).

Rules: knows an asyncio transport and nothing of HTTP. It owns the connection's read/write
pause state, the responses' on_sent hooks and how a connection ends. Subclasses say what
"drained" means (`_drained`: start the next request) and when reading may resume.

- Writing: the high-water mark is set to 0 by the subclass, so pause_writing fires whenever a
  write did not reach the socket whole. resume_writing means the buffer is empty. Only then
  do the on_sent hooks run, because zero-copy output memory may be reused from that point.
- Reading pauses while writing is paused, and when the subclass asks (_pause_reading).
- Closing after a final response is lingering: FIN first, then input is read and discarded
  for LINGER_SECONDS, then close. A close() over unread input would send a TCP reset, and the
  client could lose the response that was just written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# After our last response: how long we keep draining input before a hard close (nginx: 5 s).
LINGER_SECONDS = 2.0


class FlowControl(asyncio.Protocol):
    __slots__ = (
        "loop", "transport", "reading_paused", "writing_paused", "pending_sent", "read_done", "eof", "linger",
        "write_buffered", "write_progress_at",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.pending_sent: list[Callable[[], None]] = []  # on_sent hooks waiting for the buffer to drain
        self.read_done = False  # parse nothing more: answer what is queued, then close
        self.eof = False  # the client shut its write side
        self.linger: asyncio.TimerHandle | None = None  # set once our write side is shut
        self.write_buffered = 0  # write-buffer size at the last check, to see a stalled reader
        self.write_progress_at = 0.0

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.write_buffered = 0
        self.write_progress_at = self.loop.time()
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._run_pending_sent()
        self._drained()

    def _drained(self) -> None:
        """The write buffer is empty: the subclass may write or start more."""

    def _lost(self) -> None:
        """connection_lost's part: nothing more can be written, so every hook runs now."""
        if self.linger is not None:
            self.linger.cancel()
        self.transport = None
        self.read_done = True
        self.writing_paused = False
        self._run_pending_sent()

    def _run_pending_sent(self) -> None:
        pending, self.pending_sent = self.pending_sent, []
        for callback in pending:
            callback()

    # Writing and closing

    def _writable(self) -> bool:
        transport = self.transport
        return transport is not None and not transport.is_closing() and self.linger is None

    def _write(self, parts: list[Any]) -> None:
        if self._writable():
            self.transport.writelines(parts)  # type: ignore[union-attr]

    def _close(self) -> None:
        """Close after our last response: shut the write side, drain input for LINGER_SECONDS, close."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.linger is not None:
            return
        self.read_done = True
        if self.eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()  # FIN after the buffered response
        self.linger = self.loop.call_later(LINGER_SECONDS, transport.close)
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()  # data_received discards it

    def _write_stalled(self, now: float, timeout: float) -> bool:
        """While writing is paused: abort when the reader took no byte for `timeout` s (0: never).

        Also while lingering, where close() would wait for that buffer to drain forever.
        """
        transport = self.transport
        assert transport is not None
        size = transport.get_write_buffer_size()
        if self.write_buffered == 0 or size < self.write_buffered:
            self.write_progress_at = now
        self.write_buffered = size
        if 0 < timeout < now - self.write_progress_at:
            transport.abort()
            return True
        return False

    # Reading

    def _stop_reading(self) -> None:
        self.read_done = True
        self._pause_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and self.linger is None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> bool:
        if self.reading_paused and not self.read_done and not self.writing_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
            return True
        return False
