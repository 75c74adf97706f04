"""The pictures of a benchmark run, next to its report: throughput against connections, and p50/p99
latency against throughput, for each server and scenario family: one panel per model in each, every
family drawn (one measured at a single connection count is a single point).

Rules: reads the figures run.py keeps (per repetition, keyed "<family>_c<connections>/<server>"),
takes the median over repetitions, as the report's tables do, and writes PNG files with matplotlib's
Agg backend (no display). Knows nothing of how the figures were measured.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

KEY = re.compile(r"^(?P<family>.+)_c(?P<conns>\d+)(?:_after)?$")
THROUGHPUT = "results-throughput.png"
LATENCY = "results-latency.png"
P99 = "results-p99.png"  # p99 against connections, as issue 13 asks beside throughput

Series = dict[tuple[str, str], list[tuple[int, float, float, float]]]  # (family, server) -> (conns, rps, p50, p99)


def series(reps: list[dict[str, dict[str, Any]]]) -> Series:
    """Median req/s, p50 and p99 of every load-generator scenario, by family and server, by connections."""
    found: Series = {}
    for name in reps[0]:
        key, server = name.split("/")
        match = KEY.match(key)
        figures = [rep[name] for rep in reps if name in rep and "p50_ms" in rep[name]]
        if match is None or not figures or key.endswith("_after"):
            continue
        point = (int(match["conns"]), *(statistics.median(float(f[field]) for f in figures)
                                        for field in ("rps", "p50_ms", "p99_ms")))
        found.setdefault((match["family"], server), []).append(point)  # type: ignore[arg-type]
    return {k: sorted(v) for k, v in found.items()}


def _panels(plt: Any, groups: list[str]) -> tuple[Any, list[Any]]:
    """A figure with one panel per model group, two panels a row; unused panels hidden."""
    cols = min(2, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(groups):]:
        ax.axis("off")
    return fig, flat[: len(groups)]


def _finish(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)


def write_plots(folder: Path, reps: list[dict[str, dict[str, Any]]]) -> list[str]:
    """Write the pictures into `folder`; their file names, for the report to embed (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return []
    data = series(reps)
    if not data:
        return []
    # One panel per model (the family's first word: add, health, resnet, friendly), a line per scenario
    # family and server in it; a scenario measured at one connection count is a single point.
    groups = sorted({family.split("_")[0] for family, _ in data})
    fig, axes = _panels(plt, groups)
    for ax, group in zip(axes, groups, strict=True):
        conns = set()
        for (family, server), points in sorted(data.items()):
            if family.split("_")[0] == group:
                conns.update(p[0] for p in points)
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{family} / {server}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(conns), [str(c) for c in sorted(conns)])
        ax.set_ylim(bottom=0)
        _finish(ax, group, "connections (concurrent requests)", "requests per second")
    fig.suptitle("Throughput against concurrency (median of repetitions)", fontsize=10)
    fig.tight_layout()
    fig.savefig(folder / THROUGHPUT, dpi=110)
    plt.close(fig)
    fig, axes = _panels(plt, groups)
    for ax, group in zip(axes, groups, strict=True):
        conns = set()
        for (family, server), points in sorted(data.items()):
            if family.split("_")[0] == group:
                conns.update(p[0] for p in points)
                ax.plot([p[0] for p in points], [p[3] for p in points], marker="x", label=f"{family} / {server}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(conns), [str(c) for c in sorted(conns)])
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        _finish(ax, group, "connections (concurrent requests)", "p99 latency ms (log scale)")
    fig.suptitle("p99 latency against concurrency (median of repetitions)", fontsize=10)
    fig.tight_layout()
    fig.savefig(folder / P99, dpi=110)
    plt.close(fig)
    fig, axes = _panels(plt, groups)
    for ax, group in zip(axes, groups, strict=True):
        for (family, server), points in sorted(data.items()):
            if family.split("_")[0] != group:
                continue
            rps = [p[1] for p in points]
            line = ax.plot(rps, [p[2] for p in points], marker="o", label=f"{family} / {server} p50")[0]
            ax.plot(rps, [p[3] for p in points], marker="x", linestyle="--", color=line.get_color(),
                    label=f"{family} / {server} p99")
            for conns, x, _, y in points:
                ax.annotate(f"c{conns}", (x, y), fontsize=6, textcoords="offset points", xytext=(2, 2))
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        _finish(ax, group, "requests per second", "latency ms (log scale)")
    fig.suptitle("p50 (solid, o) and p99 (dashed, x) latency against throughput; points labelled by connections",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(folder / LATENCY, dpi=110)
    plt.close(fig)
    return [THROUGHPUT, P99, LATENCY]
