"""gRPC with --rest_workers 2: every worker serves --port (SO_REUSEPORT), new connections spread
across them, and SIGTERM to the parent lets each worker finish the gRPC calls it holds.

Which worker served a call is told by the gate node (tests/gate_node.py), which writes the PID
of the process it ran in: "pass" is a pipeline behind a gate opened at once (it only records),
"held" one behind a gate the test opens after the signal. Each channel has its own connection
(grpc.use_local_subchannel_pool), so each is hashed by the kernel to one worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
from concurrent.futures import Future
from pathlib import Path

import grpc
import numpy as np

from fastserve.grpc.proto import inference_pb2 as pb
from tests.e2e.test_workers import WAIT, parent_of, wait_log, worker_pids
from tests.gates import Gate, gated_sections
from tests.grpcstub import SERVICE, infer_request
from tests.modelzoo import add_model, save
from tests.serverproc import ServerProcess

MAX_CHANNELS = 64  # both workers reached by 64 hashed connections fails with odds ~1e-19
X = np.arange(4, dtype=np.float32).reshape(1, 4)


def own_channel(host: str) -> grpc.Channel:
    return grpc.insecure_channel(host, options=[("grpc.use_local_subchannel_pool", 1)])


def infer_future(channel: grpc.Channel, pipeline: str) -> Future:
    call = channel.unary_unary(SERVICE + "ModelInfer", response_deserializer=pb.ModelInferResponse.FromString)
    return call.future(infer_request(pipeline, {"x": ("FP32", X)}).SerializeToString(), timeout=WAIT)


def assert_echoed(response: pb.ModelInferResponse) -> None:
    (out,) = response.outputs
    assert out.name == "y" and np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == X.ravel().tolist()


def test_workers_share_the_grpc_port_spread_calls_and_drain_them_on_sigterm(tmp_path: Path,
                                                                           grpc_transport: str) -> None:
    passing, held = Gate(tmp_path / "pass"), Gate(tmp_path / "held")
    passing.open()
    save(add_model(), tmp_path / "add")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_config_list": [{"config": {"name": "add", "base_path": "add"}}],
                                  **gated_sections(**{"pass": passing, "held": held})}))
    server = ServerProcess("--config_path", str(config), "--rest_workers", "2", grpc=True,
                           grpc_transport=grpc_transport)
    channels: list[grpc.Channel] = []
    try:
        wait_log(server, r"server ready: 2 workers")
        pids = worker_pids(server)
        assert all(parent_of(pid) == server.proc.pid for pid in pids.values())
        ports = re.findall(r"\[worker \d\] listening on grpc://127\.0\.0\.1:(\d+)", server.log())
        assert sorted(ports) == [str(server.grpc_port)] * 2, server.log()

        # Spread: each new connection lands on one worker; stop once both have answered one.
        by_worker: dict[int, grpc.Channel] = {}
        while len(by_worker) < len(pids):
            assert len(channels) < MAX_CHANNELS, f"{len(channels)} connections reached only {sorted(by_worker)}"
            channel = own_channel(server.grpc_host)
            channels.append(channel)
            before = set(passing.entered())
            assert_echoed(infer_future(channel, "pass").result(WAIT))
            (entry,) = set(passing.entered()) - before
            by_worker.setdefault(int(entry.split("-")[1]), channel)
        assert set(by_worker) == set(pids.values())

        # Drain: one call held in each worker when the parent gets SIGTERM; both are answered.
        calls = [infer_future(channel, "held") for channel in by_worker.values()]
        held.wait_entered(len(pids))
        assert held.entered_pids() == set(pids.values())
        os.kill(server.proc.pid, signal.SIGTERM)
        wait_log(server, r"\[worker \d\] shutting down: finishing", count=len(pids))
        assert server.proc.poll() is None and not any(call.done() for call in calls)
        held.open()
        for call in calls:
            assert_echoed(call.result(WAIT))
        assert server.proc.wait(WAIT) == 0
        assert "Traceback" not in server.log()
    finally:
        held.open()
        for channel in channels:
            channel.close()
        server.stop()
