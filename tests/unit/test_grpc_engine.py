"""The hand-written HTTP/2 engine (fastserve/grpc/h2/engine.py) against python-hyper's h2 client:
requests cut at every byte, padding, CONTINUATION, flow control both ways, the HPACK cache's
safety, the pre-built reply, and the protocol errors that end a connection."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, TrailersReceived, WindowUpdated
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame

from fastserve.grpc.h2 import codes
from fastserve.grpc.h2.engine import PREFACE, Engine
from fastserve.grpc.h2.hpackin import HeaderDecoder
from fastserve.grpc.h2.hpackout import OK, RESPONSE
from fastserve.grpc.h2.outbound import status_trailers, unary_frames

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/s/M"), (b":authority", b"x"),
           (b"content-type", b"application/grpc"), (b"te", b"trailers")]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_headers(self, sid: int, fields: Any, headers: dict[bytes, bytes], end_stream: bool) -> None:
        self.events.append(("headers", sid, headers[b":path"], end_stream))

    def on_data(self, sid: int, piece: Any) -> None:
        if self.events and self.events[-1][:2] == ("data", sid):
            self.events[-1] = ("data", sid, self.events[-1][2] + bytes(piece))
        else:
            self.events.append(("data", sid, bytes(piece)))

    def on_end(self, sid: int) -> None:
        self.events.append(("end", sid))

    def on_reset(self, sid: int) -> None:
        self.events.append(("reset", sid))

    def on_window(self, sid: int) -> None:
        if sid:  # 0: the client's SETTINGS (its initial window) or a connection WINDOW_UPDATE
            self.events.append(("window", sid))

    def on_ping_ack(self) -> None:
        self.events.append(("pong",))

    def on_goaway(self) -> None:
        self.events.append(("goaway",))


def pair(max_streams: int | None = None, window: int = 1 << 20) -> tuple[H2Connection, Engine, Recorder]:
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    recorder = Recorder()
    engine = Engine(recorder, 1 << 20, window, 4 << 20, max_streams)
    engine.receive(client.data_to_send())
    client.receive_data(b"".join(bytes(p) for p in engine.take()))  # our SETTINGS: the client ACKs them
    engine.receive(client.data_to_send())
    engine.take()
    return client, engine, recorder


def to_client(client: H2Connection, engine: Engine) -> list[Any]:
    return client.receive_data(b"".join(bytes(p) for p in engine.take()))


def test_a_request_cut_at_every_byte_gives_the_same_events() -> None:
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.send_data(1, b"\x00\x00\x00\x00\x03abc", end_stream=True)
    wire = client.data_to_send()
    whole = Recorder()
    Engine(whole, 1 << 20, 1 << 20, 4 << 20, None).receive(wire)
    assert whole.events == [("headers", 1, b"/s/M", False), ("data", 1, b"\x00\x00\x00\x00\x03abc"), ("end", 1)]
    for cut in range(1, len(wire)):
        pieces = Recorder()
        engine = Engine(pieces, 1 << 20, 1 << 20, 4 << 20, None)
        engine.receive(wire[:cut])
        engine.receive(wire[cut:])
        assert pieces.events == whole.events, cut
    trickle = Recorder()
    engine = Engine(trickle, 1 << 20, 1 << 20, 4 << 20, None)
    for i in range(len(wire)):  # one byte per read: every incomplete head and frame is kept and resumed
        engine.receive(wire[i:i + 1])
    assert [e[0] for e in trickle.events] == ["headers"] + ["data"] + ["end"]
    assert trickle.events[1] == whole.events[1]


def test_padding_priority_and_continuation_are_read() -> None:
    client, engine, recorder = pair()
    block = Encoder().encode(REQUEST)
    head = HeadersFrame(3, block[:5], flags=["PADDED", "PRIORITY"], pad_length=7, depends_on=1, stream_weight=9)
    rest = ContinuationFrame(3, block[5:], flags=["END_HEADERS"])
    data = DataFrame(3, b"hello", flags=["PADDED", "END_STREAM"], pad_length=4)
    engine.headers = HeaderDecoder(1 << 16)  # a fresh HPACK context, as the hand-made Encoder's
    engine.receive(head.serialize() + rest.serialize() + data.serialize())
    assert recorder.events == [("headers", 3, b"/s/M", False), ("data", 3, b"hello"), ("end", 3)]


def test_an_interleaved_frame_inside_a_header_block_is_a_protocol_error() -> None:
    _, engine, _ = pair()
    block = Encoder().encode(REQUEST)
    with pytest.raises(codes.ProtocolError) as caught:
        engine.receive(HeadersFrame(1, block[:4]).serialize() + PingFrame(0, b"12345678").serialize())
    assert caught.value.code == codes.PROTOCOL_ERROR


def test_the_hpack_cache_never_outlives_a_table_change() -> None:
    decoder = HeaderDecoder(1 << 16)
    encoder = Encoder()
    first = encoder.encode([(b"x-a", b"1")])  # literal with incremental indexing: the table changes
    assert decoder.decode(first)[0] == [(b"x-a", b"1")] and not decoder.kept
    newest = b"\xbe"  # index 62: the newest dynamic entry, whatever it is
    assert decoder.decode(newest)[0] == [(b"x-a", b"1")] and newest in decoder.kept
    assert decoder.decode(newest)[0] == [(b"x-a", b"1")]  # from the cache
    decoder.decode(encoder.encode([(b"x-b", b"2")]))  # a new newest entry: everything kept is dropped
    assert not decoder.kept
    assert decoder.decode(newest)[0] == [(b"x-b", b"2")]
    decoder.decode(b"\x20")  # a table size update to 0 (evicts both): the cache is dropped again
    assert not decoder.kept
    with pytest.raises(codes.ProtocolError) as caught:
        decoder.decode(newest)  # the entry is gone: a compression error, not a stale answer
    assert caught.value.code == codes.COMPRESSION_ERROR


def test_a_unary_reply_in_one_piece_reads_as_headers_data_trailers() -> None:
    client, engine, recorder = pair()
    client.send_headers(1, REQUEST, end_stream=True)
    engine.receive(client.data_to_send())
    engine.send_raw(1, unary_frames(1, b"reply"), 10, True)
    events = to_client(client, engine)
    kinds = [type(e) for e in events]
    assert kinds == [ResponseReceived, DataReceived, TrailersReceived, StreamEnded], events
    assert dict(events[0].headers)[b":status"] == b"200" and events[1].data == b"\x00\x00\x00\x00\x05reply"
    assert dict(events[2].headers) == {b"grpc-status": b"0"} and 1 not in engine.streams


def test_long_trailers_go_in_continuation_frames_and_a_small_peer_table_is_reset() -> None:
    client, engine, _ = pair()
    client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 0})
    client.send_headers(1, REQUEST, end_stream=True)
    engine.receive(client.data_to_send())
    engine.send_headers(1, RESPONSE)
    message = "é" * 8000  # percent-encoded: 48 kB of trailers, over the 16 kB frame size
    engine.send_headers(1, status_trailers(grpc.StatusCode.INTERNAL, message), end_stream=True)
    events = to_client(client, engine)
    trailers = next(e for e in events if isinstance(e, TrailersReceived))
    assert dict(trailers.headers)[b"grpc-status"] == b"13"
    assert dict(trailers.headers)[b"grpc-message"] == b"%C3%A9" * 8000
    assert OK == b"\x00\x0bgrpc-status\x010"


def test_flow_control_both_ways() -> None:
    client, engine, recorder = pair(window=100_000)
    client.send_headers(1, REQUEST)
    client.send_data(1, b"x" * 60_000)
    engine.receive(client.data_to_send())
    updates = [e for e in to_client(client, engine) if isinstance(e, WindowUpdated)]
    assert [e.stream_id for e in updates] == [1]  # past half the stream's window: it is opened again
    assert engine.window(1) == 65535  # the client's window for our DATA
    engine.send_headers(1, RESPONSE)
    engine.send_data(1, b"y" * 16384)
    assert engine.window(1) == 65535 - 16384
    client.receive_data(b"".join(bytes(p) for p in engine.take()))
    client.increment_flow_control_window(1000, stream_id=1)
    engine.receive(client.data_to_send())
    assert engine.streams[1].window == 65535 - 16384 + 1000 and recorder.events[-1] == ("window", 1)
    assert engine.window(1) == engine.send_window == 65535 - 16384  # the connection's is the smaller now


def test_data_beyond_the_connection_window_is_a_flow_control_error() -> None:
    _, engine, _ = pair()
    engine.received = engine.connection_window - 10
    with pytest.raises(codes.ProtocolError) as caught:
        engine.receive(DataFrame(1, b"x" * 11).serialize())
    assert caught.value.code == codes.FLOW_CONTROL_ERROR


def test_the_stream_limit_holds_once_acknowledged() -> None:
    client, engine, recorder = pair(max_streams=1)
    client.send_headers(1, REQUEST)
    engine.receive(client.data_to_send())
    # h2 itself keeps to the limit: the second stream's frame is made by hand, in its HPACK context
    engine.receive(HeadersFrame(3, client.encoder.encode(REQUEST), flags=["END_HEADERS"]).serialize())
    assert b"".join(engine.take()) == b"\x00\x00\x04\x03\x00\x00\x00\x00\x03\x00\x00\x00\x07"  # RST_STREAM 3 REFUSED
    assert [e[1] for e in recorder.events if e[0] == "headers"] == [1]


def test_a_ping_is_answered_with_its_data() -> None:
    client, engine, _ = pair()
    client.ping(b"abcdefgh")
    engine.receive(client.data_to_send())
    out = b"".join(bytes(p) for p in engine.take())
    assert out == PingFrame(0, b"abcdefgh", flags=["ACK"]).serialize()


@pytest.mark.parametrize("wire, code", [
    (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 40, codes.PROTOCOL_ERROR),
    (PREFACE + PingFrame(0, b"12345678").serialize(), codes.PROTOCOL_ERROR),  # SETTINGS must come first
])
def test_not_http2_is_a_protocol_error(wire: bytes, code: int) -> None:
    with pytest.raises(codes.ProtocolError) as caught:
        Engine(Recorder(), 1 << 20, 1 << 20, 4 << 20, None).receive(wire)
    assert caught.value.code == code


@pytest.mark.parametrize("frame, code", [
    (DataFrame(9, b"x").serialize(), codes.PROTOCOL_ERROR),  # an idle stream
    (HeadersFrame(2, Encoder().encode(REQUEST), flags=["END_HEADERS"]).serialize(), codes.PROTOCOL_ERROR),
    (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"x" * 7, codes.FRAME_SIZE_ERROR),  # a 7-byte PING
    (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00", codes.PROTOCOL_ERROR),  # WINDOW_UPDATE of 0
    (b"\x20\x00\x00\x00\x00\x00\x00\x00\x01", codes.FRAME_SIZE_ERROR),  # over our 1 MiB frame size
])
def test_broken_frames_are_connection_errors(frame: bytes, code: int) -> None:
    _, engine, _ = pair()
    with pytest.raises(codes.ProtocolError) as caught:
        engine.receive(frame)
    assert caught.value.code == code
