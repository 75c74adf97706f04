"""A short headless locust run of bench/locustfile.py against a real server on the bundled demo models.

Every scenario (health, JSON, binary and JPEG inference) must have run and none may fail:
locust's exit code and its summary table both say so. (The stats CSV is flushed only every 10 s
and, in locust 2.47, not always at exit after a short run, so the printed summary is parsed.)
Bounded: 5 users for 5 s, then 2 s (~15 s in all). On a machine slow enough that a run ends before
a scenario got its turn (locust's clock starts before its users are up), the run is repeated with 4x
the time, at most twice: the checks never hinge on how much a given second holds.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
SUMMARY_ROW = re.compile(r"^(?:GET|POST)?\s+(?P<name>\S.*?)\s+(?P<requests>\d+)\s+(?P<failures>\d+)\(", re.M)
SCENARIOS = {"/v2/health/live", "/v2/health/ready", "json_infer add", "binary_infer digits", "jpeg_infer digits"}

# Never import locust here: it monkey-patches the process with gevent (and deadlocks pytest's import).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust is not installed")


@pytest.fixture(scope="module")
def demo_server() -> Iterator[ServerProcess]:
    with ServerProcess() as proc:  # no model flags: the bundled demo models
        yield proc


def run_locust(host: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "5", "-r", "5",
               "--host", host, "--only-summary", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)


def read_stats(output: str) -> dict[str, tuple[int, int]]:
    """{name: (requests, failures)} from the first table locust prints (requests before percentiles)."""
    stats: dict[str, tuple[int, int]] = {}
    for found in SUMMARY_ROW.finditer(output.split("Response time percentiles")[0]):
        stats.setdefault(found["name"].strip(), (int(found["requests"]), int(found["failures"])))
    return stats


def run_until(ran: Callable[[dict[str, tuple[int, int]]], bool], host: str, seconds: int, *extra: str,
              env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, dict[str, tuple[int, int]]]:
    """Locust for `seconds`, again for 4x and 16x as long while `ran(stats)` says the run was too short."""
    for attempt in range(3):
        done = run_locust(host, *extra, "-t", f"{seconds * 4 ** attempt}s", env=env)
        stats = read_stats(done.stderr)
        if ran(stats):
            break
    return done, stats


def test_locust_scenarios_run_without_failures(demo_server: ServerProcess) -> None:
    done, stats = run_until(lambda stats: SCENARIOS <= set(stats), demo_server.url, 5)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in SCENARIOS:
        assert name in stats, f"scenario {name} never ran: {done.stderr[-3000:]}"
        requests, failures = stats[name]
        assert requests > 0 and failures == 0, (name, requests, failures)
    assert stats["Aggregated"][1] == 0


def test_locust_reports_wrong_answers_as_failures(demo_server: ServerProcess) -> None:
    """The checks bite: pointing the JSON scenario at the digits model makes every request fail."""
    env = {**os.environ, "LOCUST_ADD_MODEL": "digits"}
    done, stats = run_until(lambda stats: stats.get("json_infer add", (0, 0))[0] > 0, demo_server.url, 2,
                            "--tags", "json", env=env)
    assert done.returncode != 0, done.stderr[-2000:]
    requests, failures = stats["json_infer add"]
    assert failures == requests > 0
    assert "Missing input with specific name" in done.stderr
