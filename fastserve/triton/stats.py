"""Always-on inference statistics per model version and pipeline, in Triton's statistics form.

Rules: pure bookkeeping, filled by the inference core (core/inference.py) for every transport;
knows no HTTP, protobuf or OpenVINO. A request costs a few float additions and one dict
lookup on the event-loop thread (the only writer, so no locks); bench/stats_cost.py measures it.
Rendering to Triton's ModelStatistics document happens only when /stats is asked.

What the durations are (Triton's names, fastserve's phases; docs/triton.md has the table):
- success: from the request reaching the core (decoded) to its outputs being back on the loop,
  ready to encode; fail: the same up to the error. The transports' own parsing and encoding
  lie outside, as Triton's frontends do.
- queue: waiting for a free infer request, or in the batcher for a batch to leave;
- compute_input: binding the request's tensors to the model's inputs (validation, copies,
  image decoding); a REST JSON request taken by the per-model fast path (v2/fastjson.py) is
  decoded and bound in one pass before it reaches the core, so its compute_input is ~0 and that
  work lies with the transport's parsing; compute_infer: OpenVINO's inference (as ovms_inference_time_us);
  compute_output: the rest, handing the outputs back (the async hop to the loop included).
inference_count counts rows (dim 0) of a version whose config has max_batch_size > 0, else
requests; execution_count counts inferences run, so a batch of joined requests is one.
"""

from __future__ import annotations

import time
from time import perf_counter
from typing import Any

# perf_counter() -> ms since the epoch, for last_inference, without a clock call per request.
_EPOCH_OFFSET = time.time() - perf_counter()


class InferStats:
    """Counters of one model version (or pipeline), kept per execution size so a request updates one list.

    `sizes[n]` (n >= 1) sums the requests that ran an execution of n rows (1 for every execution of an
    unbatched version); `sizes[0]` those that joined a batch another request ran. Each list holds
    [requests, success s, queue us, input s, infer us, rows]; the totals are summed when rendered."""

    __slots__ = ("batched", "last", "sizes", "failed", "failed_s")

    def __init__(self, batched: bool = False) -> None:
        self.batched = batched  # max_batch_size > 0: inference_count counts rows
        self.last = 0.0  # perf_counter() of the last request, 0: none yet
        self.sizes: dict[int, list[float]] = {}
        self.failed = 0
        self.failed_s = 0.0

    def succeeded(self, started: float, bound: float, done: float, wait_us: float, infer_us: float,
                  rows: int, executed: int) -> None:
        """One successful request. `executed`: the size of the execution it ran, as batch_stats reports it
        (rows when batched, 1 when not), or 0 when it joined a batch already counted by another member."""
        self.last = done
        counts = self.sizes.get(executed)
        if counts is None:
            counts = self.sizes[executed] = [0, 0.0, 0.0, 0.0, 0.0, 0]
        counts[0] += 1
        counts[1] += done - started
        counts[2] += wait_us
        counts[3] += bound - started
        counts[4] += infer_us
        counts[5] += rows

    def fail(self, started: float) -> None:
        now = perf_counter()
        self.last = now
        self.failed += 1
        self.failed_s += now - started

    # Triton's JSON (extension_statistics.md): counts and ns are integers

    def document(self, name: str, version: str) -> dict[str, Any]:
        total = [sum(values) for values in zip(*self.sizes.values(), strict=True)] or [0, 0.0, 0.0, 0.0, 0.0, 0]
        ok, ok_s, queue_us, input_s, infer_us, rows = total
        executions = sum(int(c[0]) for size, c in self.sizes.items() if size)
        return {
            "name": name,
            "version": version,
            "last_inference": round((self.last + _EPOCH_OFFSET) * 1e3) if self.last else 0,
            "inference_count": int(rows if self.batched else ok),
            "execution_count": executions,
            "inference_stats": {
                "success": _duration(ok, ok_s * 1e9),
                "fail": _duration(self.failed, self.failed_s * 1e9),
                "queue": _duration(ok, queue_us * 1e3),
                "compute_input": _duration(ok, input_s * 1e9),
                "compute_infer": _duration(ok, infer_us * 1e3),
                "compute_output": _duration(ok, _output_ns(ok_s, queue_us, input_s, infer_us)),
                "cache_hit": _duration(0, 0),  # no response cache
                "cache_miss": _duration(0, 0),
            },
            "response_stats": {},
            "batch_stats": [{
                "batch_size": size,
                "compute_input": _duration(c[0], c[3] * 1e9),
                "compute_infer": _duration(c[0], c[4] * 1e3),
                "compute_output": _duration(c[0], _output_ns(c[1], c[2], c[3], c[4])),
            } for size, c in sorted(self.sizes.items()) if size],
            "memory_usage": [],
        }  # fmt: skip


def _output_ns(success_s: float, queue_us: float, input_s: float, infer_us: float) -> float:
    """compute_output: the rest of the success time. Never negative: a batch member's queue time began
    before the batch's own bind, so for members it can overlap the others."""
    return max(0.0, (success_s - input_s) * 1e9 - (queue_us + infer_us) * 1e3)


def count_success(stats: InferStats, arrays: list[Any], result: Any, started: float, bound: float) -> None:
    """A successful request of `arrays` with its result: its rows, and the execution it ran (or joined:
    a batcher's members carry `batch_rows`, the batch's rows on the first, 0 on the others)."""
    executed = getattr(result, "batch_rows", -1)
    if stats.batched:
        first = arrays[0] if arrays else None
        rows = first.shape[0] if first is not None and first.ndim else 1
        if executed < 0:
            executed = rows
    else:  # every execution is of size 1 in Triton's terms, and rows are not counted
        rows = 1
        executed = 1 if executed else 0
    stats.succeeded(started, bound, perf_counter(), result.wait_us, result.infer_us, rows, executed)


def _duration(count: float, ns: float) -> dict[str, int]:
    return {"count": int(count), "ns": round(ns)}
