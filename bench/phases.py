"""Per-request CPU budget of add JSON, phase by phase, fastserve beside the lean prototype.

Rules: in process, no sockets (the kernel's share, the same read and write for both servers, comes
on top; bench/quick.py measures it under wrk). Each phase runs alone on a request prepared by the
phase before it, best of 5 rounds of 20000, in process CPU time (OpenVINO's threads included). The
prototype's phases are its own functions, imported from ../shared/peers at run time (never copied).
Phases: parse (httptools feeding a protocol with no-op callbacks), route, decode (JSON -> tensors),
bind (checks against the model), decode + bind in one pass (the model's fast path, which the request
takes when it can; decode and bind are the general path), infer (OpenVINO, outputs back), encode
(JSON out), respond (the HTTP head), and the whole request through each server's protocol object.
Usage: python bench/phases.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench import micro, models  # noqa: E402

PEERS = BENCH.parent.parent / "shared" / "peers"


def cost(fn: Callable[[], Any], count: int, rounds: int) -> float:
    """Best-of-rounds process CPU microseconds per call."""
    for _ in range(min(count, 2000)):
        fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            fn()
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


class _Callbacks:
    """httptools callbacks that do nothing: the parser's own cost."""

    def on_url(self, url: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        pass

    def on_message_complete(self) -> None:
        pass


def fastserve_phases(config: Path, body: bytes, wire: bytes, count: int, rounds: int) -> dict[str, float]:
    import uvloop

    from fastserve.core.inference import select_outputs
    from fastserve.handlers import respond
    from fastserve.http.request import Request
    from fastserve.router import match
    from fastserve.v2.decode import decode_request

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    protocol = micro.fastserve_protocol(config, loop)
    core = protocol.app.core
    target = core.target("add", None)
    decoded = decode_request(body, None)
    arrays = target.bind(decoded)
    selected = select_outputs(decoded, target.outputs)
    indexes = [spec.index for spec, _ in selected]

    def infer() -> None:
        target.infer(arrays, indexes).release()

    def encode() -> None:
        outcome = core.infer(target, decoded)
        respond(outcome)

    outcome_cost = cost(lambda: core.infer(target, decoded).result.release(), count, rounds)  # type: ignore[union-attr]
    response = respond(core.infer(target, decoded))  # type: ignore[arg-type]
    request = Request(b"POST", b"/v2/models/add/infer", {b"content-type": b"application/json"}, bytearray(body),
                      True, False)
    import httptools

    parser = httptools.HttpRequestParser(_Callbacks())
    figures = {
        "parse": cost(lambda: parser.feed_data(wire), count, rounds),
        "route": cost(lambda: match(b"POST", b"/v2/models/add/infer"), count, rounds),
        "decode": cost(lambda: decode_request(body, None), count, rounds),
        "bind": cost(lambda: target.bind(decoded), count, rounds),
        "decode + bind (v2/fastjson.py, what app.handle runs)": cost(lambda: target.fast_json(body), count, rounds),
        "infer": cost(infer, count, rounds),
        "core (bind + select + infer + statistics)": outcome_cost,
        "encode": cost(encode, count, rounds) - outcome_cost,
        "respond (HTTP head)": cost(lambda: response.wire(True, False, False), count, rounds),
        "app.handle (route cache .. encode)": cost(lambda: protocol.app.handle(request), count, rounds),
        "whole request (protocol object)": cost(lambda: protocol.data_received(wire), count, rounds),
    }
    loop.close()
    return figures


def proto_phases(repo: Path, body: bytes, wire: bytes, count: int, rounds: int) -> dict[str, float] | None:
    if not (PEERS / "proto_ov_server.py").exists():
        return None
    sys.path.insert(0, str(PEERS))
    import httptools
    import proto_ov_server as proto  # type: ignore[import-not-found]
    from ovrun import OvModel  # type: ignore[import-not-found]

    model = proto.MODELS["add"] = OvModel(str(repo / "add" / "1" / "model.xml"))
    request, feed = proto.parse_infer(body, None)
    outputs = model.infer_sync(feed)
    protocol = proto.Proto()
    protocol.connection_made(micro.CountingTransport())
    parser = httptools.HttpRequestParser(_Callbacks())
    encoded = proto.render("add", request, outputs)
    return {
        "parse": cost(lambda: parser.feed_data(wire), count, rounds),
        "decode": cost(lambda: proto.parse_infer(body, None), count, rounds),
        "infer": cost(lambda: model.infer_sync(feed), count, rounds),
        "encode": cost(lambda: proto.render("add", request, outputs), count, rounds),
        "respond (HTTP head)": cost(lambda: proto.reply(200, encoded), count, rounds),
        "whole request (protocol object)": cost(lambda: protocol.data_received(wire), count, rounds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    repo = Path(tempfile.mkdtemp(prefix="fastserve-phases-"))
    models.save(models.build_add_model(), repo, "add")
    config = models.write_config(repo, [models.ServedModel("add", "add")])
    body = models.json_body(models.add_inputs())
    wire = micro.request_bytes("POST", "/v2/models/add/infer", body, {"Content-Type": "application/json"})
    ours = fastserve_phases(config, body, wire, args.requests, args.rounds)
    theirs = proto_phases(repo, body, wire, args.requests, args.rounds) or {}
    print("| phase (add JSON, in process) | fastserve us | prototype us |")
    print("|---|---|---|")
    for phase, value in ours.items():
        other = theirs.get(phase)
        print(f"| {phase} | {value:.2f} | {'-' if other is None else f'{other:.2f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
