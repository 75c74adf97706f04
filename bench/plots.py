"""The pictures of a benchmark run, next to its report: throughput against connections, and p50/p99
latency against throughput, for each server and scenario family.

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
    written = []
    curves = {k: v for k, v in data.items() if len(v) > 1}
    if curves:
        fig, ax = plt.subplots(figsize=(8, 5))
        for (family, server), points in sorted(curves.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{family} / {server}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (concurrent requests)")
        ax.set_ylabel("requests per second")
        ax.set_title("Throughput against concurrency (median of repetitions)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / THROUGHPUT, dpi=110)
        plt.close(fig)
        written.append(THROUGHPUT)
    if data:
        # One panel per model (the family's first word: add, health, resnet, friendly), a line per
        # scenario family and server in it.
        groups = sorted({family.split("_")[0] for family, _ in data})
        cols = min(2, len(groups))
        rows = -(-len(groups) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
        for ax, group in zip(axes.flat, groups, strict=False):
            for (family, server), points in sorted(data.items()):
                if family.split("_")[0] != group:
                    continue
                rps = [p[1] for p in points]
                line = ax.plot(rps, [p[2] for p in points], marker="o", label=f"{family} / {server} p50")[0]
                ax.plot(rps, [p[3] for p in points], marker="x", linestyle="--", color=line.get_color(),
                        label=f"{family} / {server} p99")
                for conns, x, _, y in points:
                    ax.annotate(f"c{conns}", (x, y), fontsize=6, textcoords="offset points", xytext=(2, 2))
            ax.set_title(group, fontsize=10)
            ax.set_xlabel("requests per second", fontsize=8)
            ax.set_ylabel("latency ms (log scale)", fontsize=8)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(groups):]:
            ax.axis("off")
        fig.suptitle("p50 (solid, o) and p99 (dashed, x) latency against throughput; points labelled by connections",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / LATENCY, dpi=110)
        plt.close(fig)
        written.append(LATENCY)
    return written
