"""Triton's perf_analyzer, made runnable on a plain Debian machine, and run against fastserve.

Rules: perf_analyzer is the C++ binary inside the tritonclient 2.45.0 wheel (newer wheels no
longer carry it). The wheel is fetched with pip into bench/.perf_analyzer/ and only the binary
is kept; it needs two shared libraries Debian does not have by default: libb64.so.0d (package
libb64-0d, apt) and libcudart.so.12 (the nvidia-cuda-runtime-cu12 wheel; the binary runs on a
CPU-only machine, it only has to load it), found through LD_LIBRARY_PATH. Nothing is installed
system-wide from here: a missing libb64 is reported with the apt command that fixes it.
Used by bench/run.py (scenarios *_pa_*), tests/e2e/test_perf_analyzer.py and, on its own:

    python bench/perf_analyzer.py -m add -u 127.0.0.1:8000 --shape a:1,4 --shape b:1,4
    python bench/perf_analyzer.py --check        # fetch what is missing, say whether it can run
"""

from __future__ import annotations

import csv
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
HOME = Path(os.environ.get("FASTSERVE_PERF_ANALYZER_HOME", BENCH / ".perf_analyzer"))
WHEEL = "tritonclient==2.45.0"
MEMBER = "tritonclient-2.45.0.data/data/bin/perf_analyzer"
CUDA_RUNTIME = "nvidia-cuda-runtime-cu12"
LIBB64_HINT = "apt-get install -y libb64-0d"
# pip downloads ~12 MB (the wheel) and ~3 MB (the CUDA runtime): a minute is plenty.
PIP_TIMEOUT_S = 300


class NotRunnable(RuntimeError):
    """perf_analyzer cannot run here; the message says why and what fixes it."""


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    env: dict[str, str]

    def run(self, args: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def ensure(fetch: bool = True) -> PerfAnalyzer:
    """perf_analyzer ready to run, fetching the binary and the CUDA runtime when `fetch`; NotRunnable if not."""
    binary = _binary(fetch)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(_cudart_dir(fetch)), env.get("LD_LIBRARY_PATH")]))
    missing = missing_libraries(binary, env)
    if missing:
        hint = f" ({LIBB64_HINT})" if any(lib.startswith("libb64") for lib in missing) else ""
        raise NotRunnable(f"{binary} needs {', '.join(missing)}{hint}")
    done = subprocess.run([str(binary), "--version"], env=env, capture_output=True, text=True, timeout=60)
    if "Perf Analyzer" not in done.stdout + done.stderr:
        raise NotRunnable(f"{binary} --version did not run: {(done.stdout + done.stderr)[-500:]}")
    return PerfAnalyzer(binary, env)


def missing_libraries(binary: Path, env: dict[str, str]) -> list[str]:
    if shutil.which("ldd") is None:
        return []  # let the run itself tell
    done = subprocess.run(["ldd", str(binary)], env=env, capture_output=True, text=True, timeout=60)
    return [line.split("=>")[0].strip() for line in done.stdout.splitlines() if "not found" in line]


def _binary(fetch: bool) -> Path:
    binary = HOME / "bin" / "perf_analyzer"
    if binary.is_file():
        return binary
    if not fetch:
        raise NotRunnable(f"{binary} is not there (python bench/perf_analyzer.py --check fetches it)")
    with tempfile.TemporaryDirectory() as tmp:
        _pip("download", "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL)
        wheels = list(Path(tmp).glob("tritonclient-*.whl"))
        if not wheels:
            raise NotRunnable(f"pip download {WHEEL} left no wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            binary.parent.mkdir(parents=True, exist_ok=True)
            partial = binary.with_suffix(".part")
            with wheel.open(MEMBER) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    partial.chmod(0o755)
    partial.replace(binary)  # whole or not at all: a parallel caller never sees half a binary
    return binary


def _cudart_dir(fetch: bool) -> Path:
    """The folder of libcudart.so.12: from the running Python's nvidia-cuda-runtime-cu12, else our own copy."""
    spec = importlib.util.find_spec("nvidia.cuda_runtime") if importlib.util.find_spec("nvidia") else None
    folders = [Path(p) / "lib" for p in (spec.submodule_search_locations or [])] if spec else []
    folders.append(HOME / "cuda" / "nvidia" / "cuda_runtime" / "lib")
    for folder in folders:
        if (folder / "libcudart.so.12").exists():
            return folder
    if not fetch:
        raise NotRunnable(f"libcudart.so.12 not found (pip install {CUDA_RUNTIME})")
    _pip("install", "--no-deps", "--target", str(HOME / "cuda"), CUDA_RUNTIME)
    return _cudart_dir(False)


def _pip(*args: str) -> None:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True,
                              timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotRunnable(f"pip {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        raise NotRunnable(f"pip {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


def read_csv(path: Path) -> list[dict[str, float]]:
    """perf_analyzer's -f report: one row per concurrency; latencies in microseconds."""
    with path.open() as handle:
        return [{key.strip(): float(value) for key, value in row.items() if key and value not in (None, "")}
                for row in csv.DictReader(handle)]


def measure(tool: PerfAnalyzer, url: str, protocol: str, model: str, concurrency: int, seconds: float,
            extra: tuple[str, ...] = ()) -> dict[str, object]:
    """One closed-loop run at `concurrency` for bench/run.py, in loadgen.LoadResult's fields.

    Three windows of seconds/3 (`-s 999`: every three windows count as stable, so the run takes
    the time asked for on a busy machine too); throughput and latency percentiles are
    perf_analyzer's over them, and its server-side breakdown (our statistics extension) is kept."""
    window_ms = max(100, int(seconds * 1000 / 3))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "pa.csv"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = tool.run(["-m", model, "-u", url, "-i", protocol, "--concurrency-range", f"{concurrency}:{concurrency}",
                         "-p", str(window_ms), "-s", "999", "-f", str(report), *extra], timeout=seconds * 4 + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or not report.exists():
            raise RuntimeError(f"perf_analyzer failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
        (row,) = read_csv(report)
    measured_s = 3 * window_ms / 1000
    rps = row["Inferences/Second"]
    return {
        "requests": round(rps * measured_s), "seconds": measured_s, "rps": rps,
        "p50_ms": row["p50 latency"] / 1e3, "p99_ms": row["p99 latency"] / 1e3, "errors": 0,
        "loadgen_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "tool": f"perf_analyzer {protocol}",
        # the server's own phases, from the statistics extension (us per request)
        "server_us": {key: row.get(f"Server {key}", 0.0) for key in
                      ("Queue", "Compute Input", "Compute Infer", "Compute Output")},
    }  # fmt: skip


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        try:
            tool = ensure()
        except NotRunnable as exc:
            print(f"perf_analyzer cannot run: {exc}", file=sys.stderr)
            return 1
        print(f"perf_analyzer runs: {tool.binary} (LD_LIBRARY_PATH={tool.env['LD_LIBRARY_PATH']})")
        return 0
    try:
        tool = ensure()
    except NotRunnable as exc:
        print(f"perf_analyzer cannot run: {exc}", file=sys.stderr)
        return 1
    return subprocess.run([str(tool.binary), *argv], env=tool.env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
