"""The servable's execution choice on real compiled models: `auto` runs a model inline when its
warm-up is short and async when it is long, moves an inline model that turns out slow to async
(and back), and frees infer requests only when OpenVINO is done with them.

Slow and fast here are measured, not assumed: the spin model of tests/slowwork.py is sized to
take a multiple of the servable's own thresholds on this machine.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from fastserve.errors import InferenceFailed
from fastserve.models.loader import _wants_one_thread, load_version
from fastserve.models.servable import (
    FAILURE_POLL_S,
    INLINE_THRESHOLD_US,
    MAX_FAILURE_POLL_S,
    SLOW_US,
    InferResult,
    Servable,
)
from fastserve.models.slots import one_thread_hides_failures, runs_one_thread
from fastserve.settings import ModelSettings
from tests import modelzoo
from tests.slowwork import LAYERS, seconds_per_row, spin_input, spin_model, spin_rows

# A thin spin model: 4 layers a row, so the warm-up probe (one row) stays far below the inline
# threshold even on a slow machine, while many rows make an inference as slow as a test needs.
THIN = 4


def compiled_servable(model: ov.Model, name: str) -> Servable:
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    return Servable(name, 1, compiled, 0, "auto")


def test_auto_runs_a_model_with_a_long_warm_up_async_and_a_short_one_inline() -> None:
    # Layers for one row to take 10x the inline threshold here (the probe runs one row).
    per_layer_row = seconds_per_row() / LAYERS
    layers = min(4096, math.ceil(10 * INLINE_THRESHOLD_US / 1e6 / per_layer_row))
    slow = compiled_servable(spin_model(layers), "slow")
    assert not slow.inline and slow.probe_us is not None and slow.probe_us >= INLINE_THRESHOLD_US, slow.probe_us
    fast = compiled_servable(modelzoo.versioned_model(1), "fast")
    assert fast.inline and fast.probe_us is not None and fast.probe_us < INLINE_THRESHOLD_US, fast.probe_us


def test_an_inline_model_that_turns_out_slow_moves_to_async() -> None:
    servable = compiled_servable(spin_model(THIN), "spin")
    assert servable.inline and servable.probe_us is not None and servable.probe_us < INLINE_THRESHOLD_US
    slow = spin_input(spin_rows(10 * SLOW_US / 1e6, THIN))  # 10x the time that counts as slow inline
    small = spin_input(1)
    runs = 0
    while servable.inline and runs < 60:  # a fast run between slow ones only delays the move
        result = servable.run([small if runs % 3 == 2 else slow], [0])
        assert type(result) is InferResult
        result.release()
        runs += 1
    assert not servable.inline and runs >= 8

    async def main() -> None:
        pending = servable.run([slow], [0])
        assert not isinstance(pending, InferResult)  # an awaitable now: the loop stays free
        (await pending).release()

    asyncio.run(main())


def test_the_execution_score_switches_back_and_settles() -> None:
    servable = compiled_servable(modelzoo.versioned_model(1), "tiny")
    assert servable.inline and servable.score == 0 and servable.switch_at == 8
    for _ in range(7):
        servable.adapt(5000)  # slow
    servable.adapt(100)  # a fast one in between only delays the move
    assert servable.inline
    for _ in range(2):
        servable.adapt(5000)
    assert not servable.inline and servable.switch_at == 16
    for _ in range(20):
        servable.adapt(300)  # async, neither fast (< 125 us with the hop) nor slow: stays
    assert not servable.inline
    for _ in range(8):
        servable.adapt(80)
    assert servable.inline and servable.switch_at == 32  # back inline; the next move needs 32 slow runs
    for _ in range(31):
        servable.adapt(5000)
    assert servable.inline
    servable.adapt(5000)
    assert not servable.inline


def test_an_async_inference_failing_inside_openvino_is_a_500_and_frees_its_request() -> None:
    servable = compiled_servable(modelzoo.failing_model(), "failing")
    servable.inline = False
    bad = [np.arange(6, dtype=np.float32), np.array([4, 4], np.int64)]  # 6 values cannot be 4x4

    async def main() -> None:
        started = time.perf_counter()
        with pytest.raises(InferenceFailed, match="Internal inference error - .*reshape"):
            await asyncio.wait_for(servable.run(bad, [0]), 5)  # type: ignore[arg-type]
        assert time.perf_counter() - started < 1.0  # found by the failure poll, not by a caller's timeout
        assert servable.pool.busy == 0 and not servable.running
        good = await servable.run([np.arange(6, dtype=np.float32), np.array([2, 3], np.int64)], [0])  # type: ignore[misc]
        np.testing.assert_array_equal(good.arrays[0], np.arange(6, dtype=np.float32).reshape(2, 3))
        good.release()
        assert servable.pool.busy == 0

    asyncio.run(main())


def test_a_cancelled_async_caller_frees_the_request_only_when_openvino_is_done() -> None:
    servable = compiled_servable(spin_model(), "spin")
    servable.inline = False
    x = spin_input(spin_rows(0.5))  # sized to run 0.5 s here: still running when the caller is cancelled

    async def main() -> None:
        task = asyncio.ensure_future(servable.run([x], [0]))  # type: ignore[arg-type]
        while not servable.running:
            await asyncio.sleep(0)
        assert servable.pool.busy == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert servable.pool.busy == 1  # OpenVINO still runs on it
        deadline = time.monotonic() + 60
        while servable.pool.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert servable.pool.busy == 0 and not servable.running

    asyncio.run(main())


# What the loader used to compile small inline models with (one stream of one thread).
ONE_THREAD = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "ENABLE_CPU_PINNING": False}


async def resolve(pending: InferResult | Awaitable[InferResult]) -> InferResult:
    return pending if isinstance(pending, InferResult) else await pending


def test_a_failure_on_a_one_thread_model_is_reported_and_the_next_request_gets_its_own_outputs() -> None:
    # OpenVINO 2026.4 returns from such a model's failed synchronous infer() as if it had worked, and
    # then skips the next infer() of the other request, which kept its previous outputs (the batching
    # e2e test's wide batch got the narrow one's (16, 4)): slots.one_thread_hides_failures.
    compiled = ov.Core().compile_model(modelzoo.failing_model(), "CPU", ONE_THREAD)
    servable = Servable("failing", 1, compiled, 2, "auto")

    async def main() -> None:
        x = np.arange(8, dtype=np.float32)
        held = await resolve(servable.run([x, np.array([2, 4])], [0]))  # holds one request: the failure gets the other
        np.testing.assert_array_equal(held.arrays[0], x.reshape(2, 4))
        with pytest.raises(InferenceFailed):
            await resolve(servable.run([x, np.array([3, 3])], [0]))
        held.release()
        for width in (3, 2):  # on the first request again, at new shapes
            y = np.arange(2 * width, dtype=np.float32) + width
            result = await resolve(servable.run([y, np.array([2, width])], [0]))
            np.testing.assert_array_equal(result.arrays[0], y.reshape(2, width))
            result.release()
        assert servable.pool.busy == 0

    asyncio.run(main())


def test_the_loader_picks_one_thread_only_where_failures_are_reported(tmp_path: Path) -> None:
    # A model whose every shape is dynamic may fail at run time (a shape the data decides): one thread
    # only where this OpenVINO reports such failures.
    model_file = modelzoo.save(modelzoo.dynamic_model(), tmp_path / "dynamic") / "model.xml"
    servable = load_version(ov.Core(), ModelSettings(name="dynamic", base_path=tmp_path / "dynamic"), 1, model_file)
    assert not servable.static
    assert not (one_thread_hides_failures() and runs_one_thread(servable.compiled))


def test_a_fully_static_small_model_runs_inline_on_one_thread(tmp_path: Path) -> None:
    # Every shape static and the inputs checked before infer(): nothing can fail inside OpenVINO, so the
    # one-thread path (no second thread woken per tiny inference) is safe on every OpenVINO.
    model_file = modelzoo.save(modelzoo.add_model(), tmp_path / "add") / "model.xml"
    servable = load_version(ov.Core(), ModelSettings(name="add", base_path=tmp_path / "add"), 1, model_file)
    assert servable.static
    # The loader tries one thread for it on every OpenVINO; whether it keeps it is a warm-up timing
    # (one thread no slower than two), which a loaded machine can tip: not asserted here.
    settings = ModelSettings(name="add", base_path=tmp_path / "add")
    assert _wants_one_thread(ov.Core().read_model(model_file), servable, settings)
    assert servable.probe_us is not None  # not moved to the async path


def test_the_failure_poll_follows_the_inferences_time_and_still_reports_failures() -> None:
    servable = compiled_servable(spin_model(THIN), "spin")
    servable.inline = False
    slow = spin_input(spin_rows(0.03, THIN))  # ~30 ms an inference, as sized on this machine now
    small = spin_input(1)

    async def run(rows: np.ndarray, times: int) -> float:
        shortest = math.inf
        for _ in range(times):
            started = time.perf_counter()
            (await servable.run([rows], [0])).release()  # type: ignore[misc]
            shortest = min(shortest, time.perf_counter() - started)
        return shortest

    assert servable.poll_s == FAILURE_POLL_S
    shortest = asyncio.run(run(slow, 12))
    # A running average (1/8 a step) of twice each inference's time, within 5-100 ms: after 12
    # slow ones it is past 80% of the way there, whatever this machine's speed made "slow".
    target = min(max(2 * shortest, FAILURE_POLL_S), MAX_FAILURE_POLL_S)
    assert target * 0.75 <= servable.poll_s <= MAX_FAILURE_POLL_S, (servable.poll_s, shortest)
    asyncio.run(run(small, 60))  # fast inferences bring it back down to the 5 ms floor
    assert servable.poll_s < FAILURE_POLL_S * 1.5 + (target - FAILURE_POLL_S) * (7 / 8) ** 60 * 1.01

    failing = compiled_servable(modelzoo.failing_model(), "failing")
    failing.inline = False
    failing.poll_s = MAX_FAILURE_POLL_S  # as after slow inferences: a failure is still found by the poll

    async def fail() -> None:
        bad = [np.arange(6, dtype=np.float32), np.array([4, 4], np.int64)]
        with pytest.raises(InferenceFailed, match="Internal inference error"):
            await asyncio.wait_for(failing.run(bad, [0]), 5)  # type: ignore[arg-type]
        assert failing.pool.busy == 0 and not failing.running

    asyncio.run(fail())
