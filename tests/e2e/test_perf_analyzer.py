"""Triton's perf_analyzer (the binary of the tritonclient 2.45.0 wheel), unchanged, against the real
server over HTTP and gRPC (both transports): default runs, --shape, -b, pipelines, and its server-side
breakdown.

bench/perf_analyzer.py fetches the binary and the CUDA runtime it loads; the tests skip, saying
why, only when it cannot run here (libb64-0d missing: `.ci/run` installs it). Runs are bounded:
3 windows of at least 50 requests (`-s 999`: any three windows count as stable, so a busy
machine cannot make perf_analyzer give up), one connection, and a timeout.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from bench import perf_analyzer
from tests.rawhttp import get
from tests.serverproc import ServerProcess
from tests.tritonrepo import RANGED_MAX, write_triton_repository

BOUNDED = ["--measurement-mode", "count_windows", "--measurement-request-count", "50", "-s", "999",
           "-p", "100", "--max-trials", "10"]
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def tool() -> perf_analyzer.PerfAnalyzer:
    try:
        return perf_analyzer.ensure()
    except perf_analyzer.NotRunnable as exc:
        pytest.skip(f"perf_analyzer cannot run on this machine: {exc}")


def run(tool: perf_analyzer.PerfAnalyzer, server: ServerProcess, protocol: str,
        *args: str) -> subprocess.CompletedProcess:
    url = server.host if protocol == "http" else server.grpc_host
    return tool.run(["-u", url, "-i", protocol, *args, *BOUNDED], timeout=TIMEOUT_S)


def number(text: str, label: str) -> float:
    found = re.search(rf"{label}: ([0-9.]+)", text)
    assert found, f"no {label!r} in:\n{text}"
    return float(found.group(1))


def measured(done: subprocess.CompletedProcess) -> dict[str, float]:
    """perf_analyzer's summary: client throughput, and the server's counts (our statistics extension)."""
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    server = out.split("  Server: ", 1)
    assert len(server) == 2, f"no server-side section (statistics extension not seen):\n{out[-3000:]}"
    breakdown = re.search(r"queue (\d+) usec \+ compute input (\d+) usec \+ compute infer (\d+) usec \+ "
                          r"compute output (\d+) usec", server[1])
    assert breakdown, server[1]
    return {"throughput": number(out, "Throughput"), "requests": number(out, "Request count"),
            "inferences": number(server[1], "Inference count"), "executions": number(server[1], "Execution count"),
            "successes": number(server[1], "Successful request count"), "infer_us": float(breakdown.group(3))}


@pytest.fixture(scope="module")
def grpcio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The same models behind the other gRPC transport (grpc.aio), which serves the same method table."""
    config = write_triton_repository(tmp_path_factory.mktemp("triton-grpcio"))
    with ServerProcess("--config_path", str(config), grpc=True, grpc_transport="grpcio") as proc:
        yield proc


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_static_model_runs_without_shapes(tool: perf_analyzer.PerfAnalyzer, triton_server: ServerProcess,
                                            protocol: str) -> None:
    figures = measured(run(tool, triton_server, protocol, "-m", "add"))
    assert figures["throughput"] > 0 and figures["requests"] >= 50
    # not batched: every request is one inference and one execution (Triton's rule for max_batch_size 0)
    assert figures["inferences"] == figures["executions"] == figures["successes"] >= 50
    assert figures["infer_us"] > 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_dynamic_model_takes_shape(tool: perf_analyzer.PerfAnalyzer, triton_server: ServerProcess,
                                     protocol: str) -> None:
    refused = run(tool, triton_server, protocol, "-m", "dynamic")  # dims [-1,-1]: perf_analyzer must be told
    assert refused.returncode != 0
    assert "input x contains dynamic shape, provide shapes" in refused.stdout + refused.stderr
    assert measured(run(tool, triton_server, protocol, "-m", "dynamic", "--shape", "x:2,3"))["successes"] >= 50


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_batch_size_on_a_batched_model(tool: perf_analyzer.PerfAnalyzer, triton_server: ServerProcess,
                                       protocol: str) -> None:
    # max_batch_size 8: dims [-1] past the batch, so --shape gives the rest; -b 4 sends [4,3]
    figures = measured(run(tool, triton_server, protocol, "-m", "batched", "-b", "4", "--shape", "x:3"))
    assert figures["inferences"] == 4 * figures["successes"]  # rows, as Triton counts a batched model


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_batch_size_on_batch_size_auto(tool: perf_analyzer.PerfAnalyzer, triton_server: ServerProcess,
                                       protocol: str) -> None:
    figures = measured(run(tool, triton_server, protocol, "-m", "auto", "-b", "2"))  # dims [4]: no --shape
    assert figures["inferences"] == 2 * figures["successes"]


def test_batch_size_up_to_a_ranged_batch_dimension(tool: perf_analyzer.PerfAnalyzer,
                                                   triton_server: ServerProcess) -> None:
    # batched up to 8 by config.json, but the model's dim 0 is 1:4: max_batch_size says 4, and -b 4 is served
    # (perf_analyzer 2.45 does not check -b against max_batch_size itself; a larger -b would get the model's 400)
    figures = measured(run(tool, triton_server, "http", "-m", "ranged", "-b", str(RANGED_MAX), "--shape", "x:3"))
    assert figures["inferences"] == RANGED_MAX * figures["successes"]


def test_batch_size_is_refused_where_there_is_no_batching(tool: perf_analyzer.PerfAnalyzer,
                                                          triton_server: ServerProcess) -> None:
    done = run(tool, triton_server, "http", "-m", "add", "-b", "2")
    assert done.returncode != 0
    assert "can not specify batch size > 1 as the model does not support batching" in done.stdout + done.stderr


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_pipeline(tool: perf_analyzer.PerfAnalyzer, triton_server: ServerProcess, protocol: str) -> None:
    figures = measured(run(tool, triton_server, protocol, "-m", "add_twice"))
    assert figures["inferences"] == figures["successes"] >= 50 and figures["infer_us"] > 0


@pytest.mark.parametrize(("model", "args"), [("add", ()), ("batched", ("-b", "4", "--shape", "x:3"))])
def test_the_grpcio_transport_too(tool: perf_analyzer.PerfAnalyzer, grpcio_server: ServerProcess, model: str,
                                  args: tuple[str, ...]) -> None:
    figures = measured(run(tool, grpcio_server, "grpc", "-m", model, *args))
    assert figures["successes"] >= 50 and figures["inferences"] == (4 if args else 1) * figures["successes"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_chosen_version(tool: perf_analyzer.PerfAnalyzer, triton_server: ServerProcess, protocol: str) -> None:
    # -x 2: the version's config and statistics URLs (or RPC fields); its own counts come back
    def counts() -> list[int]:
        stats = get(triton_server.port, "/v2/models/versioned/stats").json()["model_stats"]
        return [s["inference_count"] for s in stats]  # versions 1 and 2

    before = counts()
    figures = measured(run(tool, triton_server, protocol, "-m", "versioned", "-x", "2", "--shape", "x:1,4"))
    after = counts()
    assert figures["inferences"] == figures["successes"] >= 50
    assert after[0] == before[0] and after[1] - before[1] >= figures["successes"]  # version 2 only
