"""gRPC transport semantics, with real grpcio clients and a raw HTTP/2 client (tests/h2client.py).

The first tests run on both transports (`grpc_transport`): send limit, gzip requests, IPv6,
PINGs, garbage, GOAWAY on shutdown with the call in flight finishing. The h2-only ones check
what grpcio decides inside its C core and the h2 transport decides itself: more calls than
max_concurrent_streams (queued by the client, none refused), a length prefix over a limit
refused before its body is read, the memory quota counting bytes still arriving and freed by
RST_STREAM, unknown encodings, GET and wrong content-types, the server's own deadline timer,
SETTINGS and keepalive PINGs.
In-flight work is a gated pipeline (tests/gates.py): it ends when the test opens the gate.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from h2.events import PingAckReceived, PingReceived, RemoteSettingsChanged
from h2.settings import SettingCodes

from tests.gates import Gate, write_gated_repository
from tests.grpcstub import SERVICE, Stub, infer_request, output_arrays
from tests.h2client import RawH2, grpc_frame
from tests.opsrepo import write_ops_repository
from tests.serverproc import ServerProcess

QUOTA, RECEIVE, SEND, STREAMS = 200_000, 400_000, 150_000, 4
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, grpc_transport: str) -> Iterator[ServerProcess]:
    config = write_ops_repository(tmp_path_factory.mktemp("grpc_tight"), ("dynamic",))
    arguments = (f"grpc.max_receive_message_length={RECEIVE},grpc.max_send_message_length={SEND},"
                 f"grpc.max_concurrent_streams={STREAMS},grpc.keepalive_time_ms=300,grpc.keepalive_timeout_ms=20000,"
                 "grpc.http2.min_ping_interval_without_data_ms=1000")
    with ServerProcess("--config_path", str(config), "--grpc_memory_quota", str(QUOTA), "--grpc_channel_arguments",
                       arguments, "--grpc_bind_address", "127.0.0.1,::1", grpc=True,
                       grpc_transport=grpc_transport) as proc:
        yield proc


def dynamic(nbytes: int) -> tuple[np.ndarray, bytes]:
    x = np.arange(nbytes // 4, dtype=np.float32).reshape(1, -1)
    return x, infer_request("dynamic", {"x": ("FP32", x)}).SerializeToString()


def h2_only(transport: str) -> None:
    if transport != "h2":
        pytest.skip("the h2 transport's own behaviour (grpcio decides this in its C core)")


# Both transports


def test_a_reply_over_the_send_limit_is_resource_exhausted(tight: ServerProcess) -> None:
    stub = Stub(tight.grpc_host)
    _, body = dynamic(180_000)  # within the receive limit and the quota; the reply is not
    code, details = stub.status("ModelInfer", body)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Sent message larger than max" in details, details
    x, body = dynamic(100_000)
    np.testing.assert_array_equal(output_arrays(stub.call("ModelInfer", body))["y"], 2 * x)


def test_a_message_with_non_ascii_text_reaches_the_client_intact(tight: ServerProcess) -> None:
    # grpc-message is percent-encoded on the wire (UTF-8, %XX), and decoded by the client.
    x = np.ones((1, 4), np.float32)
    code, details = Stub(tight.grpc_host).status("ModelInfer", infer_request("dynamic", {"x": ("FP32", x)},
                                                                             outputs=["żółw 100%"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("Unknown output name: żółw 100% ("), details


def test_a_gzip_compressed_request_is_inflated(tight: ServerProcess) -> None:
    channel = grpc.insecure_channel(tight.grpc_host, compression=grpc.Compression.Gzip)
    x, body = dynamic(100_000)
    reply = channel.unary_unary(SERVICE + "ModelInfer")(body, timeout=30)
    from fastserve.grpc.proto import inference_pb2 as pb

    np.testing.assert_array_equal(output_arrays(pb.ModelInferResponse.FromString(reply))["y"], 2 * x)
    channel.close()


def many_calls(stub: Stub, count: int) -> None:
    from fastserve.grpc.proto import inference_pb2 as pb

    calls = []
    for i in range(count):
        x = np.full((1, 4), i, np.float32)
        calls.append((x, stub.channel.unary_unary(SERVICE + "ModelInfer").future(
            infer_request("dynamic", {"x": ("FP32", x)}).SerializeToString(), timeout=60)))
    for x, call in calls:
        np.testing.assert_array_equal(output_arrays(pb.ModelInferResponse.FromString(call.result()))["y"], 2 * x)


def test_more_calls_than_max_concurrent_streams_all_complete(tight: ServerProcess, grpc_transport: str) -> None:
    # grpcio's server refuses some even then (RST_STREAM REFUSED_STREAM, UNAVAILABLE): why
    # fastserve sets no limit by default (docs/grpc.md).
    h2_only(grpc_transport)
    stub = Stub(tight.grpc_host)
    assert stub.call("ServerLive", b"").live  # the client has read the server's SETTINGS: it queues beyond 4
    many_calls(stub, 10 * STREAMS)


def test_calls_opened_before_the_client_read_settings_are_not_refused(tight: ServerProcess,
                                                                     grpc_transport: str) -> None:
    # grpcio refuses them (RST_STREAM REFUSED_STREAM: UNAVAILABLE, docs/grpc.md); h2 applies the
    # limit once the client has acknowledged it.
    h2_only(grpc_transport)
    many_calls(Stub(tight.grpc_host), 10 * STREAMS)


def test_ipv6_and_ipv4_addresses_both_serve(tight: ServerProcess) -> None:
    for host in (f"[::1]:{tight.grpc_port}", f"127.0.0.1:{tight.grpc_port}"):
        assert Stub(host).call("ServerLive", b"").live


def test_a_ping_is_answered(tight: ServerProcess) -> None:
    client = RawH2("127.0.0.1", tight.grpc_port)
    client.conn.ping(b"12345678")
    client.flush()
    events = client.wait(lambda seen: any(isinstance(e, PingAckReceived) for e in seen))
    assert [e.ping_data for e in events if isinstance(e, PingAckReceived)] == [b"12345678"]
    client.close()


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 24 + b"\xff" * 100,
                                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x09" + b"\xff" * 40])
def test_garbage_closes_that_connection_only(tight: ServerProcess, garbage: bytes) -> None:
    stub = Stub(tight.grpc_host)
    assert stub.call("ServerLive", b"").live  # a connection that stays open through it
    with socket.create_connection(("127.0.0.1", tight.grpc_port), timeout=30) as sock:
        sock.sendall(garbage)
        deadline = time.monotonic() + 30
        while sock.recv(65536):  # whatever the server says (a GOAWAY), then it closes
            assert time.monotonic() < deadline
    assert stub.call("ServerLive", b"").live
    assert Stub(tight.grpc_host).call("ServerLive", b"").live
    assert tight.proc.poll() is None


def test_shutdown_sends_goaway_and_the_call_in_flight_finishes(tmp_path: Path, grpc_transport: str) -> None:
    gate = Gate(tmp_path / "gate")
    config = write_gated_repository(tmp_path / "repo", gate)
    with ServerProcess("--config_path", str(config), grpc=True, grpc_transport=grpc_transport) as proc:
        stub = Stub(proc.grpc_host)
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        running = stub.channel.unary_unary(SERVICE + "ModelInfer").future(
            infer_request("gated", {"x": ("FP32", x)}).SerializeToString(), timeout=60)
        gate.wait_entered(1)
        proc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "shutting down" not in proc.log():
            assert time.monotonic() < deadline and proc.proc.poll() is None, proc.log()
            time.sleep(0.01)
        # No new call is taken (GOAWAY, the port closed); the one in flight is not cut.
        code, _ = Stub(proc.grpc_host).status("ServerLive", b"", timeout=10)
        # grpcio's server cancels a call whose connection it accepted just before its stop() closed the
        # port (the log line comes first): CANCELLED there; either way the new call is not run.
        refused = {grpc.StatusCode.UNAVAILABLE} | ({grpc.StatusCode.CANCELLED} if grpc_transport == "grpcio" else set())
        assert code in refused, code
        assert not running.done()
        gate.open()
        from fastserve.grpc.proto import inference_pb2 as pb

        np.testing.assert_array_equal(output_arrays(pb.ModelInferResponse.FromString(running.result()))["y"], x)
        assert proc.proc.wait(30) == 0


def test_debug_logs_each_call_with_its_status(tmp_path: Path, grpc_transport: str) -> None:
    config = write_ops_repository(tmp_path / "repo", ("dynamic",))
    with ServerProcess("--config_path", str(config), "--log_level", "DEBUG", grpc=True,
                       grpc_transport=grpc_transport) as proc:
        stub = Stub(proc.grpc_host)
        x, body = dynamic(64)
        np.testing.assert_array_equal(output_arrays(stub.call("ModelInfer", body))["y"], 2 * x)
        assert stub.status("ModelInfer", infer_request("nope", {"x": ("FP32", x)}))[0] == grpc.StatusCode.NOT_FOUND
        assert stub.status("ModelReady", b"\xff")[0] == grpc.StatusCode.INTERNAL  # not a message
        deadline = time.monotonic() + 30
        while proc.log().count('"POST /inference.GRPCInferenceService/') < 3:
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.02)
        log = proc.log()
        assert re.search(r'\[DEBUG\]\[fastserve\.grpc\] 127\.0\.0\.1:\d+ "POST '
                         r'/inference\.GRPCInferenceService/ModelInfer" 0\n', log), log
        assert '"POST /inference.GRPCInferenceService/ModelInfer" 5\n' in log
        assert '"POST /inference.GRPCInferenceService/ModelReady" 13\n' in log


# The h2 transport's own decisions


def test_a_prefix_over_the_receive_limit_is_refused_before_its_body(tight: ServerProcess, grpc_transport: str) -> None:
    h2_only(grpc_transport)
    client = RawH2("127.0.0.1", tight.grpc_port)
    sid = client.request(INFER, (10 * RECEIVE).to_bytes(5, "big"), end=False)  # 5 bytes: the prefix alone
    answer = client.answer(sid)
    assert answer["status"] == b"8" and b"Received message larger than max (4000000 vs. 400000)" in answer["message"]
    client.close()


def test_the_memory_quota_counts_bytes_still_arriving_and_a_reset_frees_them(tight: ServerProcess,
                                                                            grpc_transport: str) -> None:
    h2_only(grpc_transport)
    client = RawH2("127.0.0.1", tight.grpc_port)
    x, body = dynamic(120_000)
    held = client.request(INFER, grpc_frame(body)[:50_000], end=False)  # 120 KB announced, 50 KB sent
    refused = client.answer(client.request(INFER, grpc_frame(body)))  # 120 KB more: over the 200 KB quota
    assert refused["status"] == b"8" and b"--grpc_memory_quota" in refused["message"], refused
    client.reset(held)  # the client gives up: its 120 KB are free again
    served = client.answer(client.request(INFER, grpc_frame(body)))
    assert served["status"] == b"0", served
    from fastserve.grpc.proto import inference_pb2 as pb

    reply = pb.ModelInferResponse.FromString(served["data"][5:])
    np.testing.assert_array_equal(output_arrays(reply)["y"], 2 * x)
    client.close()


def test_an_unknown_encoding_is_unimplemented_naming_the_ones_accepted(tight: ServerProcess,
                                                                      grpc_transport: str) -> None:
    h2_only(grpc_transport)
    client = RawH2("127.0.0.1", tight.grpc_port)
    headers = [(b"content-type", b"application/grpc"), (b"grpc-encoding", b"br")]
    answer = client.answer(client.request(INFER, grpc_frame(b""), headers=headers))
    assert answer["status"] == b"12" and b"'br' is not supported" in answer["message"]
    assert answer["headers"][b"grpc-accept-encoding"] == b"identity,gzip"
    client.close()


def test_get_and_a_wrong_content_type_get_http_errors(tight: ServerProcess, grpc_transport: str) -> None:
    h2_only(grpc_transport)
    client = RawH2("127.0.0.1", tight.grpc_port)
    got = client.answer(client.request(INFER, method=b"GET", headers=[]))
    assert got["headers"][b":status"] == b"405" and got["status"] == b"13"
    json = client.answer(client.request(INFER, b"{}", headers=[(b"content-type", b"application/json")]))
    assert json["headers"][b":status"] == b"415" and b"content-type" in json["message"]
    live = client.answer(client.request("/inference.GRPCInferenceService/ServerLive", grpc_frame(b"")))
    assert live["status"] == b"0"
    client.close()


def test_the_server_ends_a_call_whose_deadline_passes_while_it_arrives(tight: ServerProcess,
                                                                      grpc_transport: str) -> None:
    h2_only(grpc_transport)
    client = RawH2("127.0.0.1", tight.grpc_port)
    _, body = dynamic(100_000)
    headers = [(b"content-type", b"application/grpc"), (b"grpc-timeout", b"300m")]
    answer = client.answer(client.request(INFER, grpc_frame(body)[:1000], end=False, headers=headers))
    assert answer["status"] == b"4" and answer["message"] == b"Deadline Exceeded"
    client.close()


def test_settings_carry_max_concurrent_streams_and_the_server_sends_keepalive_pings(
        tight: ServerProcess, grpc_transport: str) -> None:
    h2_only(grpc_transport)
    client = RawH2("127.0.0.1", tight.grpc_port)
    events = client.wait(lambda seen: any(isinstance(e, PingReceived) for e in seen)
                         and any(isinstance(e, RemoteSettingsChanged)
                                 and SettingCodes.MAX_CONCURRENT_STREAMS in e.changed_settings for e in seen))
    changed = [e.changed_settings[SettingCodes.MAX_CONCURRENT_STREAMS].new_value for e in events
               if isinstance(e, RemoteSettingsChanged) and SettingCodes.MAX_CONCURRENT_STREAMS in e.changed_settings]
    assert changed[-1] == STREAMS
    client.close()
