"""InferStats: the arithmetic behind Triton's statistics document (times given, no clock read)."""

from __future__ import annotations

from fastserve.triton.stats import InferStats


def test_phases_add_up_and_render_as_integer_nanoseconds() -> None:
    stats = InferStats()
    # started 10.0 s, bound 10.001 s, done 10.010 s; queue 2 ms, infer 5 ms -> output 2 ms
    stats.succeeded(10.0, 10.001, 10.010, 2000.0, 5000.0, rows=1, executed=1)
    doc = stats.document("m", "1")
    phases = doc["inference_stats"]
    assert phases["success"] == {"count": 1, "ns": 10_000_000}
    assert phases["compute_input"] == {"count": 1, "ns": 1_000_000}
    assert phases["queue"] == {"count": 1, "ns": 2_000_000}
    assert phases["compute_infer"] == {"count": 1, "ns": 5_000_000}
    assert phases["compute_output"] == {"count": 1, "ns": 2_000_000}
    assert phases["fail"] == phases["cache_hit"] == phases["cache_miss"] == {"count": 0, "ns": 0}
    assert (doc["inference_count"], doc["execution_count"]) == (1, 1)  # not batched: requests, size 1
    assert doc["batch_stats"] == [{"batch_size": 1, "compute_input": {"count": 1, "ns": 1_000_000},
                                   "compute_infer": {"count": 1, "ns": 5_000_000},
                                   "compute_output": {"count": 1, "ns": 2_000_000}}]


def test_batched_counts_rows_and_one_execution_per_batch() -> None:
    stats = InferStats(batched=True)
    stats.succeeded(0.0, 0.0, 0.001, 0.0, 500.0, rows=2, executed=5)  # the member that ran the 5-row batch
    stats.succeeded(0.0, 0.0, 0.001, 0.0, 500.0, rows=3, executed=0)  # joined it
    stats.succeeded(0.0, 0.0, 0.001, 0.0, 500.0, rows=1, executed=1)  # ran alone
    doc = stats.document("m", "1")
    assert (doc["inference_count"], doc["execution_count"]) == (6, 2)
    assert doc["inference_stats"]["success"]["count"] == 3
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in doc["batch_stats"]] == [(1, 1), (5, 1)]


def test_output_time_never_goes_negative_and_failures_are_timed() -> None:
    stats = InferStats()
    # a batch member queued before the batch's own bind: wait + infer exceed its done - bound
    stats.succeeded(0.0, 0.001, 0.002, 5000.0, 5000.0, rows=1, executed=1)
    assert stats.document("m", "1")["inference_stats"]["compute_output"] == {"count": 1, "ns": 0}
    stats.fail(0.0)  # perf_counter() - 0.0 > 0
    failed = stats.document("m", "1")["inference_stats"]["fail"]
    assert failed["count"] == 1 and failed["ns"] > 0


def test_no_inference_yet_has_last_inference_zero() -> None:
    assert InferStats().document("m", "2")["last_inference"] == 0
    assert InferStats().document("m", "2")["version"] == "2"


def test_count_success_reads_rows_and_the_batchers_share() -> None:
    import numpy as np

    from fastserve.triton.stats import count_success

    class Result:
        wait_us, infer_us = 0.0, 10.0

    class Member(Result):
        batch_rows = 0  # joined a batch another member ran

    batched, plain = InferStats(batched=True), InferStats()
    for stats in (batched, plain):
        count_success(stats, [np.zeros((3, 2))], Result(), 0.0, 0.0)  # ran alone: an execution of 3 rows
        count_success(stats, [np.zeros((2, 2))], Member(), 0.0, 0.0)
    assert (batched.document("m", "1")["inference_count"], batched.document("m", "1")["execution_count"]) == (5, 1)
    assert [b["batch_size"] for b in batched.document("m", "1")["batch_stats"]] == [3]
    assert (plain.document("m", "1")["inference_count"], plain.document("m", "1")["execution_count"]) == (2, 1)
    assert [b["batch_size"] for b in plain.document("m", "1")["batch_stats"]] == [1]
