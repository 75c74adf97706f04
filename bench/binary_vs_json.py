"""Binary vs JSON on the wire: fastserve's requests/s for the same tensors sent both ways.

Run from the repository root: `python bench/binary_vs_json.py` (about a minute; 127.0.0.1 only).
It builds its models in code, starts one fastserve on a free port, checks that every pair of
scenarios gives the same answer, then runs each scenario for --seconds with --connections
keep-alive connections from a threaded client that sends pre-built bodies (so the client's
own encoding is not measured), prints the table and the binary/JSON ratios, and writes them
to bench/RESULTS-binary.md.

Scenarios (FP32 1x3x224x224 = 588 KiB of tensor; the same data in each pair):
- mean224: cheap model (mean over H,W -> [1,3]); the request codec dominates.
- echo224: identity; the tensor goes both ways, so the response codec counts too.
- image: NHWC mean; a 224x224 JPEG (server decodes it) vs the decoded pixels as a JSON
  tensor vs the same pixels as a binary tensor.
- resnet50: ResNet-50 v1.5 (bench/models.py, random weights); inference dominates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fastserve  # noqa: F401  # isort: skip  (before openvino: fastserve/telemetry.py)
import openvino as ov
import openvino.opset15 as ops
import openvino.opset16 as ops16
import simplejpeg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import read_response  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

SHAPE = (1, 3, 224, 224)


# Models


def _named(node: Any, name: str) -> ov.Output:
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def mean_model(shape: list[int], axes: list[int]) -> ov.Model:
    x = ops.parameter(shape, ov.Type.f32, name="x")
    _named(x, "x")
    y = _named(ops.reduce_mean(x, ops.constant(np.array(axes, dtype=np.int64)), keep_dims=False), "y")
    return ov.Model([y], [x], "mean")


def echo_model(shape: list[int]) -> ov.Model:
    x = ops.parameter(shape, ov.Type.f32, name="x")
    _named(x, "x")
    return ov.Model([_named(ops16.identity(x), "y")], [x], "echo")


def resnet_model() -> ov.Model | None:
    try:
        from bench.models import build_resnet50
    except ImportError:
        return None
    model = build_resnet50()
    model.reshape({model.inputs[0]: ov.PartialShape(list(SHAPE))})
    return model


def write_repository(root: Path, with_resnet: bool) -> Path:
    models = {"mean224": mean_model(list(SHAPE), [2, 3]), "echo224": echo_model(list(SHAPE)),
              "nhwc_mean": mean_model([1, 224, 224, 3], [1, 2])}
    if with_resnet:
        resnet = resnet_model()
        if resnet is not None:
            models["resnet50"] = resnet
    for name, model in models.items():
        ov.save_model(model, root / name / "1" / "model.xml", compress_to_fp16=False)
    config = {"model_config_list": [{"config": {"name": n, "base_path": n}} for n in models]}
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


# Request bodies


@dataclass
class Scenario:
    group: str
    label: str
    model: str
    body: bytes
    headers: dict[str, str]
    kind: str  # "json", "binary" or "jpeg": how the input travels


def json_request(name: str, array: np.ndarray, binary_output: bool = False) -> tuple[bytes, dict[str, str]]:
    doc: dict[str, Any] = {"inputs": [{"name": name, "datatype": "FP32", "shape": list(array.shape),
                                       "data": array.ravel().tolist()}]}
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def binary_request(name: str, array: np.ndarray, datatype: str = "FP32", shape: list[int] | None = None,
                   binary_output: bool = True) -> tuple[bytes, dict[str, str]]:
    doc: dict[str, Any] = {"inputs": [{"name": name, "datatype": datatype, "shape": shape or list(array.shape),
                                       "parameters": {"binary_data_size": len(array.tobytes())}}]}
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    head = json.dumps(doc).encode()
    return head + array.tobytes(), {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(head))}


def photo(seed: int = 5) -> np.ndarray:
    """A 224x224 RGB picture with smooth regions, edges and noise, as a camera JPEG would hold."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:224, 0:224].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(x / 23), 128 + 90 * np.cos(y / 17), (x + y) / 2], axis=-1)
    rgb[60:160, 80:150] = (30, 200, 90)
    rgb += rng.normal(0, 6, rgb.shape)
    return rgb.clip(0, 255).astype(np.uint8)


def scenarios(with_resnet: bool) -> list[Scenario]:
    rng = np.random.default_rng(1)
    tensor = rng.random(SHAPE, dtype=np.float32)
    out = []
    for model in ("mean224", "echo224") + (("resnet50",) if with_resnet else ()):
        body, headers = json_request("x" if model != "resnet50" else "input", tensor)
        out.append(Scenario(model, "JSON", model, body, headers, "json"))
        body, headers = binary_request("x" if model != "resnet50" else "input", tensor)
        out.append(Scenario(model, "binary", model, body, headers, "binary"))
    rgb = photo()
    jpeg = simplejpeg.encode_jpeg(rgb, quality=90, colorspace="RGB")
    pixels = simplejpeg.decode_jpeg(jpeg, colorspace="BGR").astype(np.float32)[None]  # what the server decodes
    body, headers = binary_request("x", np.frombuffer(len(jpeg).to_bytes(4, "little") + jpeg, np.uint8), "BYTES", [1])
    out.append(Scenario("image", "JPEG", "nhwc_mean", body, headers, "jpeg"))
    body, headers = json_request("x", pixels)
    out.append(Scenario("image", "JSON pixels", "nhwc_mean", body, headers, "json"))
    body, headers = binary_request("x", pixels)
    out.append(Scenario("image", "binary pixels", "nhwc_mean", body, headers, "binary"))
    return out


# Client


def request_bytes(scenario: Scenario) -> bytes:
    head = f"POST /v2/models/{scenario.model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in scenario.headers.items())
    head += f"Content-Length: {len(scenario.body)}\r\n\r\n"
    return head.encode() + scenario.body


def answer(port: int, scenario: Scenario) -> np.ndarray:
    """The output `y` of one request, whichever way it came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_bytes(scenario))
        status, body, headers = read_response(sock, bytearray())
    if status != 200:
        raise RuntimeError(f"{scenario.group}/{scenario.label}: HTTP {status}: {body[:300]!r}")
    split = int(headers.get("inference-header-content-length", len(body)))
    doc = json.loads(body[:split])
    output = doc["outputs"][0]
    if "data" in output:
        return np.array(output["data"], dtype=np.float32)
    return np.frombuffer(body, dtype=np.float32, offset=split).copy()


def run_load(port: int, scenario: Scenario, seconds: float, connections: int) -> list[float]:
    """Latencies (s) of the requests that finished within `seconds`, after a 0.2 s warm-up."""
    payload = request_bytes(scenario)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    start_at = time.perf_counter() + 0.2
    stop_at = start_at + seconds

    def worker(index: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            pending = bytearray()
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                sock.sendall(payload)
                status, _, _ = read_response(sock, pending)
                ended = time.perf_counter()
                if status != 200:
                    raise RuntimeError(f"HTTP {status} under load")
                if began >= start_at and ended <= stop_at:
                    latencies[index].append(ended - began)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [t for per in latencies for t in per]


def timed_group(port: int, group: list[Scenario], seconds: float, connections: int,
                slices: int = 3) -> list[tuple[float, float]]:
    """The group's scenarios take turns in `slices` rounds, so load drifting on a shared machine hits
    them alike. Returns (requests/s, median latency ms) per scenario."""
    done: list[list[float]] = [[] for _ in group]
    for _ in range(slices):
        for index, scenario in enumerate(group):
            done[index] += run_load(port, scenario, seconds / slices, connections)
    return [(len(t) / seconds, float(np.median(t) * 1e3) if t else float("nan")) for t in done]


def interleaved(port: int, pair: list[Scenario], rounds: int) -> list[tuple[float, float]]:
    """For slow models: one connection, the scenarios taking turns, so drifting load hits both alike.

    Returns (1 / mean latency, median latency ms) per scenario.
    """
    latencies: list[list[float]] = [[] for _ in pair]
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=120) for _ in pair]
    try:
        for round_index in range(rounds + 1):
            for index, scenario in enumerate(pair):
                began = time.perf_counter()
                sockets[index].sendall(request_bytes(scenario))
                status, _, _ = read_response(sockets[index], bytearray())
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                if round_index:  # the first round warms up
                    latencies[index].append(time.perf_counter() - began)
    finally:
        for sock in sockets:
            sock.close()
    return [(1 / float(np.mean(t)), float(np.median(t) * 1e3)) for t in latencies]


def print_row(scenario: Scenario, rate: float, p50: float) -> None:
    print(f"{scenario.group:10} {scenario.label:14} {len(scenario.body) / 1024:9.1f} KiB "
          f"{rate:9.1f} req/s  p50 {p50:8.2f} ms", flush=True)


# Report


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, OpenVINO {ov.get_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per scenario")
    parser.add_argument("--connections", type=int, default=2, help="concurrent keep-alive connections")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet-50 pair")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-binary.md")
    args = parser.parse_args()
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fastserve-binbench-") as tmp:
        config = write_repository(Path(tmp), not args.no_resnet)
        with_resnet = (Path(tmp) / "resnet50").exists()
        all_scenarios = scenarios(with_resnet)
        with ServerProcess("--config_path", str(config), ready_timeout=120) as server:
            reference: dict[str, np.ndarray] = {}
            for scenario in all_scenarios:  # same answer both ways, or the figures mean nothing
                got = answer(server.port, scenario)
                first = reference.setdefault(scenario.group, got)
                tolerance = 1e-3 if scenario.kind == "jpeg" else 1e-5
                if not np.allclose(got, first, rtol=tolerance, atol=tolerance):
                    raise SystemExit(f"{scenario.group}/{scenario.label} answered differently: {got[:4]}, {first[:4]}")
            rows: list[tuple[Scenario, float, float]] = []
            for group in dict.fromkeys(s.group for s in all_scenarios):
                members = [s for s in all_scenarios if s.group == group]
                if group == "resnet50":
                    measured = interleaved(server.port, members, 6)
                else:
                    measured = timed_group(server.port, members, args.seconds, args.connections)
                for scenario, (rate, p50) in zip(members, measured, strict=True):
                    rows.append((scenario, rate, p50))
                    print_row(scenario, rate, p50)
    ratios = ratio_lines(rows)
    for line in ratios:
        print(line)
    elapsed = time.perf_counter() - began
    write_report(args, rows, ratios, elapsed, load_before, os.getloadavg()[0])
    print(f"wrote {args.out} ({elapsed:.0f} s)")


def ratio_lines(rows: list[tuple[Scenario, float, float]]) -> list[str]:
    rate = {(s.group, s.label): r for s, r, _ in rows}
    lines = []
    for group in dict.fromkeys(s.group for s, _, _ in rows):
        if group == "image":
            jpeg, pixels, binary = (rate[("image", k)] for k in ("JPEG", "JSON pixels", "binary pixels"))
            lines.append(f"image: JPEG / JSON pixels = {jpeg / pixels:.1f}x; binary pixels / JSON pixels = "
                         f"{binary / pixels:.1f}x; JPEG / binary pixels = {jpeg / binary:.2f}x")
        else:
            lines.append(f"{group}: binary / JSON = {rate[(group, 'binary')] / rate[(group, 'JSON')]:.1f}x")
    return lines


def write_report(args: argparse.Namespace, rows: list[tuple[Scenario, float, float]], ratios: list[str],
                 elapsed: float, load_before: float, load_after: float) -> None:
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    command = "python bench/binary_vs_json.py" + (f" --seconds {args.seconds:g}" if args.seconds != 3.0 else "")
    lines = [
        "## Binary tensor data vs JSON",
        "",
        f"Written by `{command}` on {now}, {elapsed:.0f} s in all: {args.seconds:g} s per scenario in 3 "
        f"slices taking turns with the other scenarios of its group, "
        f"{args.connections} keep-alive connections from a threaded client sending pre-built bodies, 127.0.0.1. "
        f"Machine: {machine()}. Load average before/after: {load_before:.2f} / {load_after:.2f} (the machine "
        "is shared; the ratios are what counts).",
        "",
        "Same tensor both ways in each group; every pair was checked to give the same answer first. "
        "Binary rows also ask for binary outputs; JSON rows get JSON outputs. ResNet-50 is too slow here for a "
        "timed run: its two rows take turns on one connection each for 6 requests (requests/s = 1 / mean latency).",
        "",
        "| group | input sent as | body | requests/s | p50 latency |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for scenario, rate, p50 in rows:
        lines.append(f"| {scenario.group} | {scenario.label} | {len(scenario.body) / 1024:.1f} KiB | {rate:.1f} | "
                     f"{p50:.2f} ms |")
    lines += ["", "Ratios (requests/s):", ""] + [f"- {line}" for line in ratios] + [""]
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
