"""The test side of tests/gate_node.py: a model repository with a "gated" pipeline, requests
that stay in flight until the test opens the gate, and a wait for them to be running.

This replaces in-flight work sized in images of a heavy model ("about 10 ms each"), which a
faster CPU finished before a signal landed: here nothing finishes until the test says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.modelzoo import add_model, save
from tests.rawhttp import Conn, Reply, build

NODE_FILE = Path(__file__).with_name("gate_node.py")
GATED_BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})


class Gate:
    """One gate folder: `entered()` counts calls that reached the node, `open()` lets all through."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def entered(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("entered-*"))

    def entered_pids(self) -> set[int]:
        return {int(name.split("-")[1]) for name in self.entered()}

    def wait_entered(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.entered()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.entered())} of {count} requests reached the gate")
            time.sleep(0.005)

    def open(self) -> None:
        (self.folder / "open").touch()


def gated_sections(**gates: Gate) -> dict[str, list[dict[str, object]]]:
    """config.json sections of one pipeline per keyword (x -> gate node -> y), held by that gate."""
    return {
        "custom_node_library_config_list": [{"name": "gate", "base_path": str(NODE_FILE)}],
        "pipeline_config_list": [{
            "name": name, "inputs": ["x"],
            "nodes": [{"name": "hold", "type": "custom", "library_name": "gate",
                       "params": {"dir": str(gate.folder)},
                       "inputs": [{"x": {"node_name": "request", "data_item": "x"}}],
                       "outputs": [{"data_item": "y", "alias": "y"}]}],
            "outputs": [{"y": {"node_name": "hold", "data_item": "y"}}],
        } for name, gate in gates.items()],
    }


def write_gated_repository(root: Path, gate: Gate, **extra: object) -> Path:
    """config.json serving "add" and the pipeline "gated" (x -> gate node -> y); returns its path."""
    save(add_model(), root / "add")
    models = [{"config": {"name": "add", "base_path": "add"}}]
    doc = {"model_config_list": models, **gated_sections(gated=gate), **extra}
    path = root / "config.json"
    path.write_text(json.dumps(doc))
    return path


def gated_request(pipeline: str = "gated") -> bytes:
    return build("POST", f"/v2/models/{pipeline}/infer", GATED_BODY.encode(), {"Content-Type": "application/json"})


def send_gated(port: int, count: int, timeout: float = 60.0) -> list[Conn]:
    """`count` connections, each with one gated request sent."""
    conns = [Conn(port, timeout=timeout) for _ in range(count)]
    for conn in conns:
        conn.send(gated_request())
    return conns


def assert_gated_ok(reply: Reply) -> None:
    assert reply.status == 200, reply.body
    (out,) = reply.json()["outputs"]
    assert out["name"] == "y" and out["data"] == [1.0, 2.0, 3.0, 4.0], out
