"""The Batcher on a fake servable: grouping, splitting, timing, failures, overflow, release refcount.

The fake computes out0 = x * 10 and out1 = row sums of x, so every member can check it got
exactly its own rows back. Load-time checks (enable_batching) run on real compiled models.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

from fastserve.errors import ConfigError, FastServeError, InferenceFailed, Unavailable
from fastserve.models.batcher import Batcher, BatchFailed
from fastserve.models.batching import _probe_rows, enable_batching
from fastserve.models.servable import InferResult, Servable
from fastserve.settings import ModelSettings
from tests import modelzoo

POISON = -999.0


class FakeSlot:
    def __init__(self) -> None:
        self.keep: list[Any] = []


class FakePool:
    def __init__(self) -> None:
        self.released = 0

    def release(self, slot: FakeSlot) -> None:
        self.released += 1


class FakeServable:
    """run(): sync results, or (async_mode) results after `gate` is set; POISON anywhere fails the batch."""

    def __init__(self, async_mode: bool = False, bad_outputs: bool = False) -> None:
        self.async_mode = async_mode
        self.bad_outputs = bad_outputs
        self.batches: list[list[np.ndarray]] = []
        self.sent_at: list[float] = []
        self.pool = FakePool()
        self.gate = asyncio.Event()
        self.running = 0

    def run(self, arrays: list[np.ndarray], wanted: list[int]) -> Any:
        self.batches.append(arrays)
        self.sent_at.append(time.perf_counter())
        if not self.async_mode:
            return self._compute(arrays, wanted)
        return self._later(arrays, wanted)

    async def _later(self, arrays: list[np.ndarray], wanted: list[int]) -> InferResult:
        self.running += 1
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return self._compute(arrays, wanted)

    def _compute(self, arrays: list[np.ndarray], wanted: list[int]) -> InferResult:
        x = arrays[0]
        if (x == POISON).any():
            raise InferenceFailed("poisoned input")
        outs = [x * 10, row_sums(x)]
        if self.bad_outputs:
            outs[1] = outs[1][:1]
        return InferResult([outs[i] for i in wanted], FakeSlot(), self.pool, 0.0, 1.0)  # type: ignore[arg-type]


def row_sums(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=tuple(range(1, x.ndim)))


def batcher_for(fake: FakeServable, max_rows: int = 8, delay_us: int = 20_000, crowded: bool = True,
                **kw: Any) -> Batcher:
    """A batcher that has seen concurrency already (crowded), unless told otherwise."""
    batcher = Batcher(fake.run, 2, max_rows, delay_us, name="fake", **kw)
    batcher.crowded = crowded
    return batcher


def rows(start: float, count: int = 1, width: int = 4, dtype: Any = np.float32) -> np.ndarray:
    return (np.arange(count * width, dtype=np.float64).reshape(count, width) + start).astype(dtype)


async def resolve(result: Any) -> InferResult:
    return result if isinstance(result, InferResult) else await result


def check_own(result: InferResult, x: np.ndarray, wanted: tuple[int, ...] = (0, 1)) -> None:
    expected = {0: x * 10, 1: row_sums(x)}
    assert len(result.arrays) == len(wanted)
    for array, index in zip(result.arrays, wanted, strict=True):
        np.testing.assert_array_equal(array, expected[index])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_requests_of_one_iteration_form_one_batch_in_order() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake)
        inputs = [rows(100 * i) for i in range(5)]
        pending = [batcher.infer([x], [0, 1]) for x in inputs]
        assert fake.batches == []  # nothing sent before the loop turns once
        results = [await resolve(p) for p in pending]
        assert len(fake.batches) == 1 and fake.batches[0][0].shape == (5, 4)
        for x, result in zip(inputs, results, strict=True):
            check_own(result, x)
        assert batcher.outstanding == 0

    run(main())


def test_members_get_their_own_rows_and_outputs() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake)
        cases = [(rows(0, 1), (0,)), (rows(50, 3), (1, 0)), (rows(900, 2), (1,))]
        pending = [batcher.infer([x], list(wanted)) for x, wanted in cases]
        for (x, wanted), p in zip(cases, pending, strict=True):
            check_own(await resolve(p), x, wanted)
        assert [b[0].shape[0] for b in fake.batches] == [6]

    run(main())


def test_shape_and_dtype_groups_are_kept_apart() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake)
        inputs = [rows(0), rows(10, width=8), rows(20, dtype=np.int32), rows(30), rows(40, width=8)]
        pending = [batcher.infer([x], [0, 1]) for x in inputs]
        for x, p in zip(inputs, pending, strict=True):
            check_own(await resolve(p), x)
        shapes = sorted((b[0].shape, b[0].dtype.name) for b in fake.batches)
        assert shapes == [((1, 4), "int32"), ((2, 4), "float32"), ((2, 8), "float32")]

    run(main())


def test_a_full_group_goes_at_once_and_a_misfit_starts_a_new_one() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake, max_rows=4)
        first = [batcher.infer([rows(i)], [0]) for i in range(4)]
        assert len(fake.batches) == 1  # full: sent inside infer(), without waiting for the loop
        big = rows(7, count=3)
        second = [batcher.infer([big], [0]), batcher.infer([rows(8, count=2)], [0])]  # 3 + 2 > 4
        assert [b[0].shape[0] for b in fake.batches] == [4, 3]
        for p in first + second:
            await resolve(p)
        assert [b[0].shape[0] for b in fake.batches] == [4, 3, 2]

    run(main())


def test_requests_that_cannot_share_a_batch_run_alone_at_once() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake, max_rows=4)
        too_big = rows(0, count=5)
        empty = np.zeros((0, 4), np.float32)
        scalar = np.float32(3.0).reshape(())
        for x in (too_big, empty):
            result = batcher.infer([x], [0, 1])
            assert type(result) is InferResult  # the servable's own answer, no waiting
            check_own(result, x)
        assert type(batcher.infer([scalar], [0])) is InferResult
        # Two inputs that disagree on dim 0 are not batchable either.
        assert type(batcher.infer([rows(0, 2), rows(0, 3)], [0])) is InferResult
        assert batcher.outstanding == 0 and batcher.groups == {}

    run(main())


def test_lone_requests_run_at_once_until_company_arrives() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake, crowded=False)
        for i in range(3):  # one at a time: each runs at once, no future, no waiting
            result = batcher.infer([rows(i)], [0, 1])
            assert type(result) is InferResult
            check_own(result, rows(i))
            await asyncio.sleep(0)
        inputs = [rows(10 + i) for i in range(4)]
        pending = [batcher.infer([x], [0, 1]) for x in inputs]  # four in one iteration
        assert type(pending[0]) is InferResult and all(asyncio.isfuture(p) for p in pending[1:])
        for x, p in zip(inputs, pending, strict=True):
            check_own(await resolve(p), x)
        assert [b[0].shape[0] for b in fake.batches] == [1, 1, 1, 1, 3] and batcher.crowded
        later = [batcher.infer([x], [0]) for x in inputs[:2]]  # crowded now: even the first one waits
        assert all(asyncio.isfuture(p) for p in later)
        for p in later:
            await resolve(p)
        lone = batcher.infer([rows(20)], [0])  # a batch of two went out: still crowded
        assert asyncio.isfuture(lone)
        await resolve(lone)  # ... and that one went out alone
        assert type(batcher.infer([rows(21)], [0])) is InferResult

    run(main())


def test_a_lone_async_request_counts_as_running() -> None:
    async def main() -> None:
        fake = FakeServable(async_mode=True)
        batcher = batcher_for(fake, delay_us=1_000_000, crowded=False)
        first = batcher.infer([rows(0)], [0])
        assert not asyncio.isfuture(first) and batcher.running == 1
        task = asyncio.ensure_future(first)  # type: ignore[arg-type]
        await asyncio.sleep(0.005)
        second = batcher.infer([rows(1)], [0])
        await asyncio.sleep(0.01)
        assert len(fake.batches) == 1  # waits for the lone one to finish
        fake.gate.set()
        check_own(await task, rows(0), (0,))
        check_own(await resolve(second), rows(1), (0,))
        assert batcher.running == 0 and len(fake.batches) == 2

    run(main())


def test_a_busy_model_makes_the_group_wait_until_a_batch_finishes() -> None:
    async def main() -> None:
        fake = FakeServable(async_mode=True)
        batcher = batcher_for(fake, delay_us=2_000_000)  # a long delay: only the completion sends it
        first = batcher.infer([rows(0)], [0])
        await asyncio.sleep(0.01)
        assert len(fake.batches) == 1 and fake.running == 1
        later = [batcher.infer([rows(i)], [0]) for i in (1, 2, 3)]
        await asyncio.sleep(0.02)
        assert len(fake.batches) == 1  # still collecting while the model is busy
        fake.gate.set()
        for x, p in zip([rows(0)] + [rows(i) for i in (1, 2, 3)], [first, *later], strict=True):
            check_own(await resolve(p), x, (0,))
        assert [b[0].shape[0] for b in fake.batches] == [1, 3]

    run(main())


def test_no_request_waits_longer_than_its_delay() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeServable(async_mode=True)
        # The third joins the group the second started: the group's deadline stays the second's,
        # so the third leaves before its own delay is up. Read from the batcher's own deadline
        # (no bound on how late a busy machine fires the timer; it never fires early).
        delay = 0.3
        batcher = batcher_for(fake, delay_us=int(delay * 1e6))
        first = batcher.infer([rows(0)], [0])  # occupies the model (never finishes until the gate opens)
        await asyncio.sleep(0.005)
        before, arrived = loop.time(), time.perf_counter()
        second = batcher.infer([rows(1)], [0])
        after = loop.time()
        (group,) = batcher.groups.values()
        assert before + delay <= group.deadline <= after + delay
        await asyncio.sleep(delay / 3)
        third = batcher.infer([rows(2)], [0])  # joins the waiting group: sent at the second one's deadline
        (same,) = batcher.groups.values()
        assert same is group and group.deadline <= after + delay and len(group.members) == 2
        while len(fake.batches) < 2:
            await asyncio.sleep(0.001)
        assert fake.sent_at[1] - arrived >= delay * 0.95  # not before the deadline
        assert fake.batches[1][0].shape[0] == 2
        fake.gate.set()
        for p in (first, second, third):
            await resolve(p)

    run(main())


def test_zero_delay_never_holds_a_group() -> None:
    async def main() -> None:
        fake = FakeServable(async_mode=True)
        batcher = batcher_for(fake, delay_us=0)
        first = batcher.infer([rows(0)], [0])
        await asyncio.sleep(0.005)
        second = batcher.infer([rows(1)], [0])
        await asyncio.sleep(0.005)
        assert len(fake.batches) == 2
        fake.gate.set()
        await resolve(first), await resolve(second)

    run(main())


def test_a_failure_fails_only_its_own_batch() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake)
        bad = [rows(0), rows(POISON), rows(5)]
        good = [rows(1, width=8), rows(2, width=8)]
        pending_bad = [batcher.infer([x], [0]) for x in bad]
        pending_good = [batcher.infer([x], [0, 1]) for x in good]
        for p in pending_bad:
            with pytest.raises(BatchFailed) as caught:
                await resolve(p)
            assert caught.value.status == 500
            expected = "Internal inference error - poisoned input (in a batch of 3 requests, 3 rows)"
            assert caught.value.message == expected
        for x, p in zip(good, pending_good, strict=True):
            check_own(await resolve(p), x)
        # The batcher keeps working afterwards.
        check_own(await resolve(batcher.infer([rows(3)], [0, 1])), rows(3))
        assert batcher.outstanding == 0

    run(main())


def test_an_async_failure_fails_its_batch_and_the_next_group_still_runs() -> None:
    async def main() -> None:
        fake = FakeServable(async_mode=True)
        batcher = batcher_for(fake, delay_us=1_000_000)
        failing = batcher.infer([rows(POISON)], [0])
        await asyncio.sleep(0.005)
        waiting = batcher.infer([rows(4)], [0, 1])
        fake.gate.set()
        with pytest.raises(FastServeError, match="poisoned input"):
            await resolve(failing)
        check_own(await resolve(waiting), rows(4))

    run(main())


def test_outputs_that_do_not_follow_the_batch_fail_clearly() -> None:
    async def main() -> None:
        fake = FakeServable(bad_outputs=True)
        batcher = batcher_for(fake)
        pending = [batcher.infer([rows(i)], [0]) for i in range(3)]
        for p in pending:
            with pytest.raises(FastServeError, match="cannot be batched: output 1 has shape"):
                await resolve(p)
        assert fake.pool.released == 1  # the batch's infer request went back

    run(main())


def test_queue_overflow_answers_503() -> None:
    async def main() -> None:
        fake = FakeServable(async_mode=True)
        batcher = batcher_for(fake, delay_us=1_000_000, max_queued=3)
        pending = [batcher.infer([rows(i)], [0]) for i in range(3)]
        with pytest.raises(Unavailable) as caught:
            batcher.infer([rows(9)], [0])
        assert caught.value.status == 503 and (b"retry-after", b"1") in caught.value.headers
        assert "Too many requests waiting for model fake" in caught.value.message
        fake.gate.set()
        for p in pending:
            await resolve(p)
        await resolve(batcher.infer([rows(9)], [0]))  # room again

    run(main())


def test_the_infer_request_is_released_after_every_member_released() -> None:
    async def main() -> None:
        fake = FakeServable()
        batcher = batcher_for(fake)
        pending = [batcher.infer([rows(i)], [0]) for i in range(3)]
        results = [await resolve(p) for p in pending]
        assert fake.pool.released == 0
        results[2].release()
        results[0].release()
        results[0].release()  # a second release by the same member counts once
        assert fake.pool.released == 0
        results[1].release()
        assert fake.pool.released == 1

    run(main())


def test_a_cancelled_member_gives_its_share_back() -> None:
    async def main() -> None:
        fake = FakeServable(async_mode=True)
        batcher = batcher_for(fake, delay_us=1_000_000)
        blocker = batcher.infer([rows(0)], [0])
        await asyncio.sleep(0.005)
        kept, dropped = batcher.infer([rows(1)], [0]), batcher.infer([rows(2)], [0])
        dropped.cancel()  # type: ignore[union-attr]
        fake.gate.set()
        (await resolve(blocker)).release()
        result = await resolve(kept)
        check_own(result, rows(1), (0,))
        assert fake.pool.released == 1  # the blocker's; the batch of two still holds its request
        result.release()
        assert fake.pool.released == 2

    run(main())


# Load-time checks and the batch-cost probe


class TimedFake:
    """time_inference() of a model whose batch of n rows costs cost(n) us; outputs follow the batch."""

    def __init__(self, cost: Any) -> None:
        self.cost = cost
        self.inputs = {"x": type("Spec", (), {"dims": ((1, -1), (4, 4))})()}

    def time_inference(self, size: int | None, repeats: int = 5) -> tuple[list[float], list[tuple[int, ...]]]:
        assert size is not None
        return [self.cost(size) * 3, self.cost(size)], [(size, 4)]  # the fastest run counts


SETTINGS = ModelSettings(name="m", base_path=Path("."), max_batch_size=16)


def test_probe_caps_batching_where_it_stops_paying() -> None:
    weights_bound = TimedFake(lambda n: 500 + 30 * n)  # per row: 530, 280, 155, ... 61
    assert _probe_rows(weights_bound, 16, SETTINGS)[0] == 16  # type: ignore[arg-type]
    linear = TimedFake(lambda n: 6000 * n)  # a big convolution: no cheaper per row in batches
    assert _probe_rows(linear, 16, SETTINGS)[0] == 1  # type: ignore[arg-type]
    flattening = TimedFake(lambda n: 100 * n if n > 4 else 400)  # best per row at 4
    assert _probe_rows(flattening, 16, SETTINGS)[0] == 4  # type: ignore[arg-type]
    one_noisy_size = TimedFake(lambda n: 5000 if n == 2 else 500 + 30 * n)  # a busy moment at size 2
    assert _probe_rows(one_noisy_size, 16, SETTINGS)[0] == 16  # type: ignore[arg-type]


def test_probe_refuses_outputs_that_do_not_follow_the_batch() -> None:
    reduced = TimedFake(lambda n: 100)
    reduced.time_inference = lambda size, repeats=5: ([100.0], [(1, 4)])  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match=r"model m: --max_batch_size: output 0 has shape \(1, 4\) for a batch of 2"):
        _probe_rows(reduced, 16, SETTINGS)  # type: ignore[arg-type]


def compiled_servable(model: ov.Model, name: str) -> Servable:
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    return Servable(name, 1, compiled, 0, "auto")


def test_a_static_batch_with_max_batch_size_is_a_config_error_naming_the_model() -> None:
    servable = compiled_servable(modelzoo.add_model(), "add")
    settings = ModelSettings(name="add", base_path=Path("."), max_batch_size=8, source="config.json: model[0].config")
    with pytest.raises(ConfigError, match=r"model add: .*max_batch_size needs a dynamic batch dimension .* input a"):
        enable_batching(servable, settings)
    assert servable.infer == servable.run


def test_a_dynamic_batch_model_gets_a_batcher_in_front() -> None:
    servable = compiled_servable(modelzoo.versioned_model(1), "versioned")
    settings = ModelSettings(name="versioned", base_path=Path("."), max_batch_size=8, max_queue_delay_microseconds=500)
    batcher = enable_batching(servable, settings)
    assert batcher is not None and servable.infer == batcher.infer
    assert "batching up to" in servable.describe_execution()

    async def main() -> None:
        inputs = [np.full((1, 4), i, np.float32) for i in range(6)]
        pending = [servable.infer([x], [0]) for x in inputs]
        for i, p in enumerate(pending):
            result = await resolve(p)
            np.testing.assert_array_equal(result.arrays[0], np.full((1, 4), i + 1, np.float32))
            result.release()
        assert batcher.batches == 2 and batcher.batched_rows == 6  # the first alone, then the other five
        assert servable.pool.busy == 0

    run(main())
