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
  image decoding); compute_infer: OpenVINO's inference (as ovms_inference_time_us);
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
    """Counters of one model version (or pipeline). Durations in seconds, queue/infer in us."""

    __slots__ = ("batched", "last", "inferences", "executions", "ok", "ok_s", "failed", "failed_s",
                 "queue_us", "input_s", "infer_us", "output_s", "batches")

    def __init__(self, batched: bool = False) -> None:
        self.batched = batched  # max_batch_size > 0: inference_count counts rows
        self.last = 0.0  # perf_counter() of the last request, 0: none yet
        self.inferences = 0
        self.executions = 0
        self.ok = 0
        self.ok_s = 0.0
        self.failed = 0
        self.failed_s = 0.0
        self.queue_us = 0.0
        self.input_s = 0.0
        self.infer_us = 0.0
        self.output_s = 0.0
        # rows of an execution -> [executions, input s, infer us, output s]
        self.batches: dict[int, list[float]] = {}

    def succeeded(self, started: float, bound: float, done: float, wait_us: float, infer_us: float,
                  rows: int, executed: int) -> None:
        """One successful request. `executed`: rows of the inference it ran (0: it joined a batch already
        counted by another member)."""
        self.last = done
        self.ok += 1
        self.ok_s += done - started
        self.inferences += rows if self.batched else 1
        self.queue_us += wait_us
        self.infer_us += infer_us
        input_s = bound - started
        self.input_s += input_s
        output_s = done - bound - (wait_us + infer_us) * 1e-6
        if output_s < 0.0:  # a timer's rounding, or a batch member queued before the batch's bind
            output_s = 0.0
        self.output_s += output_s
        if executed:
            self.executions += 1
            size = executed if self.batched else 1
            batch = self.batches.get(size)
            if batch is None:
                batch = self.batches[size] = [0, 0.0, 0.0, 0.0]
            batch[0] += 1
            batch[1] += input_s
            batch[2] += infer_us
            batch[3] += output_s

    def fail(self, started: float) -> None:
        now = perf_counter()
        self.last = now
        self.failed += 1
        self.failed_s += now - started

    # Triton's JSON (extension_statistics.md): counts and ns are integers

    def document(self, name: str, version: str) -> dict[str, Any]:
        ok = self.ok
        return {
            "name": name,
            "version": version,
            "last_inference": round((self.last + _EPOCH_OFFSET) * 1e3) if self.last else 0,
            "inference_count": self.inferences,
            "execution_count": self.executions,
            "inference_stats": {
                "success": _duration(ok, self.ok_s * 1e9),
                "fail": _duration(self.failed, self.failed_s * 1e9),
                "queue": _duration(ok, self.queue_us * 1e3),
                "compute_input": _duration(ok, self.input_s * 1e9),
                "compute_infer": _duration(ok, self.infer_us * 1e3),
                "compute_output": _duration(ok, self.output_s * 1e9),
                "cache_hit": _duration(0, 0),  # no response cache
                "cache_miss": _duration(0, 0),
            },
            "response_stats": {},
            "batch_stats": [{
                "batch_size": size,
                "compute_input": _duration(count, input_s * 1e9),
                "compute_infer": _duration(count, infer_us * 1e3),
                "compute_output": _duration(count, output_s * 1e9),
            } for size, (count, input_s, infer_us, output_s) in sorted(self.batches.items())],
            "memory_usage": [],
        }  # fmt: skip


def count_success(stats: InferStats, arrays: list[Any], result: Any, started: float, bound: float) -> None:
    """A successful request of `arrays` with its result: its rows, and the execution it ran (or joined:
    a batcher's members carry `batch_rows`, the batch's rows on the first, 0 on the others)."""
    first = arrays[0] if arrays else None
    rows = first.shape[0] if first is not None and first.ndim else 1
    executed = getattr(result, "batch_rows", -1)
    stats.succeeded(started, bound, perf_counter(), result.wait_us, result.infer_us, rows,
                    rows if executed < 0 else executed)


def _duration(count: float, ns: float) -> dict[str, int]:
    return {"count": int(count), "ns": round(ns)}
