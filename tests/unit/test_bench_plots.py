"""bench/plots.py on made-up figures: the series it reads, the PNG files it writes, and bench/run.py
putting them beside the report it writes and embedding them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plots import LATENCY, P99, THROUGHPUT, series, write_plots

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def figure(rps: float, p50: float, p99: float) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


REPS = [
    {"add_json_c1/fastserve": figure(100, 1, 2), "add_json_c8/fastserve": figure(400, 2, 5),
     "add_pa_http_c8/fastserve": figure(500, 2, 4), "health_c32_after/bare": figure(9, 9, 9),
     "resnet_inprocess/inprocess": {"rps": 7.0, "jobs": 2}},
    {"add_json_c1/fastserve": figure(300, 3, 6), "add_json_c8/fastserve": figure(600, 4, 7),
     "add_pa_http_c8/fastserve": figure(700, 2, 4), "health_c32_after/bare": figure(9, 9, 9),
     "resnet_inprocess/inprocess": {"rps": 7.0, "jobs": 2}},
]


def test_series_take_medians_by_family_and_server() -> None:
    found = series(REPS)
    # medians of two repetitions; "_after" brackets and in-process figures are no load-generator curve
    assert found == {("add_json", "fastserve"): [(1, 200.0, 2.0, 4.0), (8, 500.0, 3.0, 6.0)],
                     ("add_pa_http", "fastserve"): [(8, 600.0, 2.0, 4.0)]}


def test_pictures_are_png_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert write_plots(tmp_path, REPS) == [THROUGHPUT, P99, LATENCY]
    for name in (THROUGHPUT, P99, LATENCY):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_py_writes_the_pictures_next_to_the_report_and_embeds_them(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    extra = {"server_cpu_ms_per_req": 0.1, "errors": 0, "requests": 700, "seconds": 7.0, "server_cores": 0.5,
             "loadgen_cpu_s": 1.0, "tool": "wrk"}
    reps = [{name: {**f, **extra} for name, f in REPS[0].items() if "p50_ms" in f and "_after" not in name}]
    meta = {"mode": "full", "reps": 1, "duration_s": 7, "loadgen": "wrk", "elapsed_s": 60, "friendly": False,
            "kserve": False, "date": "2026-12-07 12:00", "load_before": [0.1] * 3, "load_after": [0.2] * 3,
            "resnet_json_bytes": 100, "server_notes": []}
    results = tmp_path / "out" / "results.json"
    results.parent.mkdir()
    results.write_text(json.dumps({"meta": meta, "reps": reps}))
    report = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, str(RUN_PY), "--replot", str(results), "--out", str(report)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = report.read_text()
    for name in (THROUGHPUT, P99, LATENCY):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # beside the report, not the figures
        assert f"]({name})" in text  # embedded by its relative name


def test_the_add_panels_draw_fastserve_the_prototype_and_kserve_from_1_to_256_connections(tmp_path: Path) -> None:
    """Issue 13 item 5: bench/run.py's add JSON scenarios, as it names them, give one line per server."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from bench.run import scenarios

    conns = (1, 8, 32, 64, 256)
    planned = [s for s in scenarios({"resnet": 1, "friendly": 1}, False) if s.key.startswith("add_json_c")]
    reps = [{f"{s.key}/{s.server}": figure(1000 * s.connections, 1, s.connections) for s in planned}]
    found = series(reps)
    assert {server for _, server in found} == {"fastserve", "proto", "kserve"}
    assert all([p[0] for p in points] == list(conns) for points in found.values())
    drawn: list[str] = []
    real_savefig = plt.Figure.savefig

    def spy(fig: plt.Figure, *args: object, **kwargs: object) -> None:
        drawn.extend(line.get_label() for ax in fig.axes for line in ax.get_lines())
        real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = spy  # type: ignore[method-assign]
    try:
        write_plots(tmp_path, reps)
    finally:
        plt.Figure.savefig = real_savefig  # type: ignore[method-assign]
    for server in ("fastserve", "proto", "kserve"):
        assert drawn.count(f"add_json / {server}") == 2, drawn  # throughput and p99 against connections
