"""Request header blocks decoded with the `hpack` package's Decoder, repeats skipped when safe.

A gRPC client sends nearly the same header block on every call of a channel: once its headers
are in the HPACK dynamic table, each call's block is the same few index bytes. Decoding such a
block again gives the same headers exactly when the dynamic table is as it was the first
time. So a decoded block is kept (keyed by its bytes) only if decoding it left the table
unchanged, and every kept block is dropped as soon as any block changes the table: a kept
block is then only ever reused on the very table it was decoded on.

"Unchanged" is checked by the table's newest entry (the same object: any insertion puts a new
tuple first), its length (evictions without an insertion shorten it) and its maximum size
(size updates). A block that adds nothing, evicts nothing and resizes nothing leaves these
three as they were; any block that does one of those changes at least one of them.
"""

from __future__ import annotations

from hpack import Decoder, HPACKError

from fastserve.grpc.h2.codes import COMPRESSION_ERROR, ProtocolError

KEPT = 64  # distinct blocks kept per connection (a client sends a handful)
Headers = list[tuple[bytes, bytes]]


class HeaderDecoder:
    __slots__ = ("decoder", "table", "kept")

    def __init__(self, max_header_list: int) -> None:
        self.decoder = Decoder(max_header_list_size=max_header_list)
        self.table = self.decoder.header_table
        self.kept: dict[bytes, tuple[Headers, dict[bytes, bytes]]] = {}

    def decode(self, block: bytes) -> tuple[Headers, dict[bytes, bytes]]:
        found = self.kept.get(block)
        if found is not None:
            return found
        entries = self.table.dynamic_entries
        newest = entries[0] if entries else None
        count, size = len(entries), self.table.maxsize
        try:
            headers = self.decoder.decode(block, raw=True)
        except HPACKError as exc:
            raise ProtocolError(COMPRESSION_ERROR, f"a header block that does not decode: {exc}") from None
        result = (headers, dict(headers))  # type: ignore[arg-type]
        entries = self.table.dynamic_entries
        if (entries[0] if entries else None) is newest and len(entries) == count and self.table.maxsize == size:
            if len(self.kept) >= KEPT:
                self.kept.clear()
            self.kept[block] = result  # type: ignore[assignment]
        else:
            self.kept.clear()
        return result  # type: ignore[return-value]
