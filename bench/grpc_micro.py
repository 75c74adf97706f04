"""Micro-benchmark of the h2 gRPC transport's per-call Python cost, in process (no sockets).

Rules: a real h2 client connection makes the bytes grpcio's client would send (the same
headers, ModelInfer of the add model a, b FP32 [1,16], typed contents as grpc_load.py), made
before the clock starts; the server's GrpcConnection is fed them in batches of --batch calls
per data_received (1: one call per read, as at c1; 32: as at c32 on one connection), with a
transport that counts what is written. Best of --rounds; process CPU includes OpenVINO's
threads. ServerLive shows the transport alone; ModelInfer the whole call.
Usage: python bench/grpc_micro.py [--rounds 5] [--calls 20000] [--batch 1,32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import models  # noqa: E402
from bench.grpc_side_by_side import add16  # noqa: E402
from bench.micro import CountingTransport  # noqa: E402
from fastserve.grpc.proto import inference_pb2 as pb  # noqa: E402

HEADERS = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:9000"),
           (b"te", b"trailers"), (b"content-type", b"application/grpc"), (b"user-agent", b"grpc-python/1.81"),
           (b"grpc-accept-encoding", b"identity, deflate, gzip"), (b"grpc-timeout", b"29999m")]


def add_request() -> bytes:
    request = pb.ModelInferRequest(model_name="add")
    for name, values in (("a", np.arange(16, dtype=np.float32)), ("b", np.full(16, 10, np.float32))):
        request.inputs.add(name=name, datatype="FP32", shape=[1, 16]).contents.fp32_contents.extend(values.tolist())
    return request.SerializeToString()


def client_bytes(path: bytes, body: bytes, calls: int, batch: int) -> tuple[bytes, list[bytes]]:
    """The connection preface, then one bytes object per batch of calls."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})  # never block the server's replies
    client.increment_flow_control_window(2**31 - 1 - 65535)
    preface = client.data_to_send()
    # The client believes every window is huge (a stand-in server says so); ours acknowledges as it reads.
    peer = H2Connection(H2Configuration(client_side=False))
    peer.initiate_connection()
    peer.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1, SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1})
    peer.increment_flow_control_window(2**31 - 1 - 65535)
    client.receive_data(peer.data_to_send())
    peer.receive_data(preface + client.data_to_send())
    client.receive_data(peer.data_to_send())
    client.data_to_send()
    message = b"\x00" + len(body).to_bytes(4, "big") + body
    batches = []
    for start in range(0, calls, batch):
        for _ in range(min(batch, calls - start)):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, [HEADERS[0], HEADERS[1], (b":path", path), *HEADERS[2:]])
            client.send_data(sid, message, end_stream=True)
        batches.append(client.data_to_send())
    return preface, batches


def server_connection(config: Path, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
    from fastserve.config import load_config_file
    from fastserve.core.inference import InferenceCore
    from fastserve.grpc.h2.protocol import GrpcConnection
    from fastserve.grpc.h2.server import H2GrpcServer
    from fastserve.models.repository import Repository
    from fastserve.settings import ServerSettings

    model_settings, _ = load_config_file(config)
    settings = ServerSettings(models=tuple(model_settings), config_path=config, grpc_port=1)
    repository = Repository(settings.models, None)
    repository.load_all(repository.plan())

    async def make() -> Any:
        return H2GrpcServer(settings, InferenceCore(repository), False)

    server = loop.run_until_complete(make())
    return server, lambda: GrpcConnection(server.shared)


def measure(make: Any, preface: bytes, batches: list[bytes], calls: int, loop: asyncio.AbstractEventLoop
            ) -> tuple[float, float]:
    connection = make()
    transport = CountingTransport()
    connection.connection_made(transport)
    connection.data_received(preface)
    cpu, wall = time.process_time(), time.perf_counter()
    for data in batches:
        connection.data_received(data)
        if connection.calls:  # a call that waits: let it finish before the next batch
            loop.run_until_complete(_drain(connection))
    wall = (time.perf_counter() - wall) / calls * 1e6
    cpu = (time.process_time() - cpu) / calls * 1e6
    assert not connection.calls and not transport.closed
    return wall, cpu


async def _drain(connection: Any) -> None:
    while connection.calls or connection.flush_soon:
        await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--batch", default="1,32")
    args = parser.parse_args(argv)
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    root = Path(tempfile.mkdtemp(prefix="fastserve-grpc-micro-"))
    add16(root)  # the add model grpc_side_by_side.py serves: a, b FP32 [1,16] -> sum
    config = models.write_config(root, [models.ServedModel("add", "add", {"execution_mode": "inline"})])
    _server, make = server_connection(config, loop)
    cases = {"ServerLive": (b"/inference.GRPCInferenceService/ServerLive", b""),
             "ModelInfer add": (b"/inference.GRPCInferenceService/ModelInfer", add_request())}
    for name, (path, body) in cases.items():
        for batch in [int(b) for b in args.batch.split(",")]:
            preface, batches = client_bytes(path, body, args.calls, batch)
            best = min((measure(make, preface, batches, args.calls, loop) for _ in range(args.rounds)),
                       key=lambda r: r[1])
            print(f"{name:16s} batch {batch:3d}: {best[0]:7.1f} us/call wall {best[1]:7.1f} us/call CPU", flush=True)
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
