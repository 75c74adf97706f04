"""bench/plots.py on made-up figures: the series it reads and the PNG files it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.plots import LATENCY, THROUGHPUT, series, write_plots


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
    assert write_plots(tmp_path, REPS) == [THROUGHPUT, LATENCY]
    for name in (THROUGHPUT, LATENCY):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
