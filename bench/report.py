"""Turns one benchmark run (figures per repetition) into bench/RESULTS.md.

Rules: every ratio is computed inside one repetition first (both sides measured minutes apart)
and only then summarised by its median across repetitions; a target that is missed says by how
much. The profile findings are not measured here: they are kept by hand in
bench/profile_notes.md and copied into the report as they are.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

Figures = dict[str, dict[str, Any]]
NOTES = Path(__file__).resolve().parent / "profile_notes.md"


def _field(name: str, key: str) -> Callable[[Figures], float | None]:
    def get(figures: Figures) -> float | None:
        figure = figures.get(name)
        return None if figure is None else float(figure[key])

    return get


def _ratio(top: str, *bottoms: str) -> Callable[[Figures], float | None]:
    """req/s of `top` over that of `bottoms` (the mean of those measured: a limit taken before and after)."""

    def get(figures: Figures) -> float | None:
        a = figures.get(top)
        limits = [float(figures[b]["rps"]) for b in bottoms if b in figures]
        if a is None or not limits or not sum(limits):
            return None
        return float(a["rps"]) / (sum(limits) / len(limits))

    return get


def _p99_ratio(top: str, bottom: str) -> Callable[[Figures], float | None]:
    def get(figures: Figures) -> float | None:
        a, b = figures.get(top), figures.get(bottom)
        if a is None or b is None or not float(b["p99_ms"]):
            return None
        return float(a["p99_ms"]) / float(b["p99_ms"])

    return get


# Limits measured before and after the windows compared with them (bench/run.py)
BARE = ("health_c32/bare", "health_c32_after/bare")
IN_PROCESS = ("resnet_inprocess/inprocess", "resnet_inprocess_after/inprocess")
# (what, how it is computed, ">=" or "<=", threshold, unit)
TARGETS: list[tuple[str, Callable[[Figures], float | None], str, float, str]] = [
    ("health: fastserve / bare uvloop+httptools, 32 conns", _ratio("health_c32/fastserve", *BARE), ">=", 0.85, "x"),
    *((f"add model, JSON, {c} conns: fastserve / lean prototype",
       _ratio(f"add_json_c{c}/fastserve", f"add_json_c{c}/proto"), ">=", 1.25, "x") for c in (32, 64, 256)),
    *((f"add model, JSON, {c} conns: fastserve p99 / lean prototype p99",
       _p99_ratio(f"add_json_c{c}/fastserve", f"add_json_c{c}/proto"), "<=", 1.0, "x") for c in (32, 64, 256)),
    ("add model, JSON, 32 conns: fastserve req/s", _field("add_json_c32/fastserve", "rps"), ">=", 7500, "req/s"),
    ("add model, JSON, 32 conns: fastserve / KServe", _ratio("add_json_c32/fastserve", "add_json_c32/kserve"),
     ">=", 10.0, "x"),
    ("add model, JSON, 32 conns: fastserve p99", _field("add_json_c32/fastserve", "p99_ms"), "<=", 3.0, "ms"),
    ("ResNet-50, binary body, 8 conns: fastserve / in-process limit",
     _ratio("resnet_bin_c8/fastserve", *IN_PROCESS), ">=", 0.97, "x"),
    ("ResNet-50, JSON body, 8 conns: fastserve / in-process limit",
     _ratio("resnet_json_c8/fastserve", *IN_PROCESS), ">=", 0.85, "x"),
    ("dynamic batching, ResNet-50, 32 conns: batched / unbatched",
     _ratio("resnet_batched_c32/fastserve", "resnet_unbatched_c32/fastserve"), ">=", 0.95, "x"),
    ("dynamic batching, batch-friendly model, 32 conns: batched / unbatched",
     _ratio("friendly_batched_c32/fastserve", "friendly_unbatched_c32/fastserve"), ">=", 1.30, "x"),
]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "req/s":
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _verdict(value: float | None, op: str, threshold: float) -> str:
    if value is None:
        return "not measured"
    if op == ">=":
        return "met" if value >= threshold else f"MISSED by {(threshold - value) / threshold:.0%}"
    return "met" if value <= threshold else f"MISSED by {(value - threshold) / threshold:.0%}"


def targets_table(reps: list[Figures]) -> list[str]:
    head = "| target | goal | " + " | ".join(f"rep {i + 1}" for i in range(len(reps))) + " | median | verdict |"
    lines = [head, "|" + "---|" * (len(reps) + 4)]
    for label, compute, op, threshold, unit in TARGETS:
        values = [compute(figures) for figures in reps]
        median = _median(values)
        cells = " | ".join(_fmt(v, unit) for v in values)
        goal = f"{op} {_fmt(threshold, unit)} {unit}".strip()
        lines.append(f"| {label} | {goal} | {cells} | **{_fmt(median, unit)}** | {_verdict(median, op, threshold)} |")
    return lines


def scenario_table(reps: list[Figures]) -> list[str]:
    lines = [
        "| scenario | server | req/s | p50 ms | p99 ms | server CPU ms/req | server cores busy | errors "
        "| loadgen CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in reps[0]:
        key, server = name.split("/")
        series = [figures[name] for figures in reps if name in figures]

        def med(field: str, series: list[dict[str, Any]] = series) -> float | None:
            return _median([s.get(field) for s in series])

        if server == "inprocess":
            lines.append(f"| {key} | in-process ({series[0]['jobs']} jobs) | {_fmt(med('rps'))} | - | - | "
                         f"{_fmt(med('cpu_ms_per_item'))} | - | - | - |")
            continue
        errors = sum(int(s["errors"]) for s in series)
        lines.append(
            f"| {key} | {server} | {_fmt(med('rps'), 'req/s')} | {_fmt(med('p50_ms'))} | {_fmt(med('p99_ms'))} | "
            f"{med('server_cpu_ms_per_req') or 0:.3f} | {_fmt(med('server_cpu_cores'))} | {errors} | "
            f"{_fmt(med('loadgen_cpu_s'))} |"
        )
    return lines


def peer_table(reps: list[Figures], peer: str = "proto") -> list[str]:
    """fastserve / the lean prototype in every scenario both served: req/s, p99 and CPU per request."""
    lines = ["| scenario | req/s ratio | p99 fastserve / proto | CPU per request fastserve / proto |",
             "|---|---|---|---|"]
    for name in reps[0]:
        key, server = name.split("/")
        if server != peer or f"{key}/fastserve" not in reps[0]:
            continue
        ratios = {field: _median([float(f[f"{key}/fastserve"][field]) / float(f[name][field]) for f in reps
                                  if name in f and f"{key}/fastserve" in f and float(f[name][field])])
                  for field in ("rps", "p99_ms", "server_cpu_ms_per_req")}
        lines.append(f"| {key} | {_fmt(ratios['rps'])} | {_fmt(ratios['p99_ms'])} | "
                     f"{_fmt(ratios['server_cpu_ms_per_req'])} |")
    return lines


def raw_table(reps: list[Figures]) -> list[str]:
    lines = ["| rep | scenario/server | req/s | p50 ms | p99 ms | server CPU ms/req | errors |", "|---" * 7 + "|"]
    for index, figures in enumerate(reps):
        for name, f in figures.items():
            if "p50_ms" in f:
                lines.append(f"| {index + 1} | {name} | {f['rps']:,.1f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | "
                             f"{f['server_cpu_ms_per_req']:.3f} | {f['errors']} |")
            else:
                lines.append(f"| {index + 1} | {name} | {f['rps']:,.2f} | - | - | {f['cpu_ms_per_item']:.1f} | - |")
    return lines


PICTURES = {"results-throughput.png": "Throughput against connections",
            "results-p99.png": "p99 latency against connections",
            "results-latency.png": "p50 and p99 latency against throughput"}


def write_report(path: Path, meta: dict[str, Any], reps: list[Figures], pictures: list[str] | None = None) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    lines = [
        "# fastserve benchmark results",
        "",
        f"Written by `python bench/run.py{' --quick' if meta['mode'] == 'quick' else ''}` on {meta['date']}: "
        f"{meta['reps']} repetition(s) of {meta['duration_s']:.0f} s per scenario, load by {meta['loadgen']}, "
        f"{meta['elapsed_s'] / 60:.1f} min in all. Machine: {os.cpu_count()} cores ({cpu}), Python "
        f"{platform.python_version()}. Load average before/after: "
        f"{meta['load_before'][0]:.2f} / {meta['load_after'][0]:.2f} (anything above ~0.3 before means the "
        "machine was shared and the absolute numbers are low; the ratios are what counts).",
        "",
        "What each figure means: bench/README.md. Ratios are taken within each repetition, then the median.",
        f"ResNet-50 JSON request body: {meta['resnet_json_bytes'] / 1e6:.2f} MB.",
    ]
    if not meta["kserve"]:
        lines.append("KServe's server was not run (no venv): its comparisons are missing.")
    if not meta["friendly"]:
        lines.append("bench/batching_probe.py (build_batch_friendly_model) was not there: the batch-friendly "
                     "scenarios were skipped.")
    lines += ["", "## Targets", "", *targets_table(reps), ""]
    if pictures:  # written by bench/plots.py next to this file
        lines += ["## Pictures", "", *(f"![{PICTURES.get(p, p)}]({p})" for p in pictures), "",
                  "Scenarios `add_pa_*` are Triton's perf_analyzer on the same add model (binary tensors over HTTP, "
                  "or gRPC); `add_json_*` are wrk with a JSON body.", ""]
    if any(name.endswith("/proto") for name in reps[0]):
        lines += ["## fastserve / the lean prototype (`../shared/peers/proto_ov_server.py`), per scenario", "",
                  "Ratios within each repetition, then the median; above 1 is better for req/s, below 1 for "
                  "p99 and CPU.", "", *peer_table(reps), ""]
    lines += ["## Every scenario (medians)", "",
              *scenario_table(reps), "", "## Per repetition", "", *raw_table(reps), ""]
    if meta.get("server_notes"):
        lines += ["## fastserve's own log (execution mode per model, warnings)", ""]
        if any("from now on" in note for note in meta["server_notes"]):
            lines += ["A model changed between inline and async during the run (\"... from now on\"): its "
                      "inferences were slower than 2 ms several times (preemption on a busy machine does it), "
                      "so part of its figures are those of the other path.", ""]
        lines += [*(f"- {note}" for note in meta["server_notes"]), ""]
    if NOTES.exists():
        lines += ["## Profile findings (kept by hand in bench/profile_notes.md)", "", NOTES.read_text().strip(), ""]
    side = sorted(NOTES.parent.glob("RESULTS-*.md"))
    if side:
        # The focused studies (binary, pipelines, workers, soak) write their own files with their
        # commands; the report carries their latest results so everything is in one place.
        lines += ["# Other measurements (each with the command that wrote it)", ""]
        for report in side:
            lines += [f"<!-- from bench/{report.name} -->", report.read_text().strip(), ""]
    path.write_text("\n".join(lines))
