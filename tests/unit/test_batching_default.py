"""The default batching decision (max_batch_size unset), on real compiled models whose batch costs are
controlled: the decision rests on measured costs, so these tests give it the costs instead of timing
this machine (models/batching.py; docs/batching.md has the measurements behind the 1.5x)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset15 as ops

from fastserve.models.batcher import Batcher
from fastserve.models.batching import (
    AUTO_GAIN,
    AUTO_MAX_ROWS,
    AUTO_MIN_DELAY_US,
    auto_rows,
    enable_batching,
    triton_max_batch_size,
)
from fastserve.models.servable import Servable
from fastserve.settings import ModelSettings
from tests import modelzoo


def servable_costing(model: ov.Model, cost: Any, name: str = "m") -> tuple[Servable, list[int]]:
    """A real Servable of `model` whose load-time timings say a batch of n rows costs cost(n) us (the
    output shapes are the model's own, at n rows); and the sizes the probe asked for."""
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    servable = Servable(name, 1, compiled, 0, "auto")
    real = servable.time_inference
    asked: list[int] = []

    def timed(rows: int | None, repeats: int = 5) -> tuple[list[float], list[tuple[int, ...]]] | None:
        measured = real(rows, 1)
        if measured is None or rows is None:
            return measured
        asked.append(rows)
        return [cost(rows) * 2, cost(rows)], measured[1]  # the fastest run counts

    servable.time_inference = timed  # type: ignore[method-assign]
    return servable, asked


def settings(**keys: Any) -> ModelSettings:
    return ModelSettings(name="m", base_path=Path("."), **keys)


def test_the_rule_on_probe_costs() -> None:
    assert auto_rows({1: 500, 2: 530, 4: 590, 8: 710, 16: 950}) == (16, 500 / (950 / 16))  # weights-bound
    assert auto_rows({1: 100, 2: 200}) == (1, 1.0)  # linear: no row is cheaper in a batch
    # The threshold: a row must cost at most 1/AUTO_GAIN of one alone at the chosen batch.
    just_under = {1: 100, 2: 200 / (AUTO_GAIN * 0.99)}
    just_over = {1: 100, 2: 200 / (AUTO_GAIN * 1.01)}
    assert auto_rows(just_under)[0] == 1
    assert auto_rows(just_over)[0] == 2
    assert auto_rows({1: 400, 2: 400, 4: 400, 8: 800, 16: 1600})[0] == 4  # flat to 4, then linear: cap 4
    assert auto_rows({1: 100}) == (1, 1.0)  # one size measured: nothing to compare


def test_unset_turns_batching_on_where_a_row_is_cheaper_in_a_batch() -> None:
    servable, asked = servable_costing(modelzoo.versioned_model(1), lambda n: 500 + 30 * n)
    batcher = enable_batching(servable, settings())
    assert isinstance(batcher, Batcher) and servable.infer == batcher.infer
    assert asked == [1, 2, 4, 8, 16] and batcher.max_rows == AUTO_MAX_ROWS
    assert batcher.delay * 1e6 == 2000  # two full batches (2 x 980 us), rounded up to the millisecond
    assert servable.batching.startswith("batching up to 16 rows, delay 2000 us, on by default: a row costs 8.65x less")
    assert "(probe 1: 530 us, 2: 560 us" in servable.batching
    assert triton_max_batch_size(servable, settings()) == AUTO_MAX_ROWS
    assert servable.batching in servable.describe_execution()  # the load log line


def test_unset_leaves_batching_off_where_rows_cost_as_much_in_a_batch() -> None:
    servable, asked = servable_costing(modelzoo.versioned_model(1), lambda n: 3000 * n)
    assert enable_batching(servable, settings()) is None and servable.infer == servable.run
    assert asked == [1, 2]  # a batch of 2 costs twice one: the probe stops there
    assert servable.batching.startswith("batching off by default: a row in a batch costs at best 1.00x less")
    assert servable.batching.endswith("--max_batch_size N forces it on)")
    assert triton_max_batch_size(servable, settings()) == 0


def test_explicit_values_override_the_measurement() -> None:
    servable, asked = servable_costing(modelzoo.versioned_model(1), lambda n: 500 + 30 * n)
    assert enable_batching(servable, settings(max_batch_size=0)) is None
    assert asked == [] and servable.batching == "batching off (--max_batch_size 0)"
    servable, _ = servable_costing(modelzoo.versioned_model(1), lambda n: 400 if n <= 2 else 200 * n)
    batcher = enable_batching(servable, settings(max_batch_size=8, max_queue_delay_microseconds=300))
    assert batcher is not None and batcher.max_rows == 2 and batcher.delay * 1e6 == 300  # on: probed cap, own delay
    servable, _ = servable_costing(modelzoo.versioned_model(1), lambda n: 500 + 30 * n)
    batcher = enable_batching(servable, settings(max_queue_delay_microseconds=0))  # delay given, batch unset
    assert batcher is not None and batcher.delay == 0


def test_unset_never_fails_a_model_it_cannot_batch() -> None:
    static, asked = servable_costing(modelzoo.add_model(), lambda n: 10)
    assert enable_batching(static, settings()) is None and asked == []
    assert static.batching.startswith("no batching: needs a dynamic batch dimension (dim 0), but input a has shape")
    dynamic, asked = servable_costing(modelzoo.dynamic_model(), lambda n: 10)
    assert enable_batching(dynamic, settings()) is None and asked == []
    assert "dynamic non-batch dims" in dynamic.batching
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    summed = ops.reduce_sum(x, ops.constant(np.array([0], np.int64)), keep_dims=False)
    reducing, _ = servable_costing(ov.Model([summed.output(0)], [x], "colsum"), lambda n: 10)
    assert enable_batching(reducing, settings()) is None
    assert "output 0 has shape (4,) for a batch of 1" in reducing.batching
    nchw, _ = servable_costing(modelzoo.versioned_model(1), lambda n: 10)
    assert enable_batching(nchw, settings(layout="CN")) is None and "puts the batch (N) elsewhere" in nchw.batching


def test_a_ranged_batch_caps_the_default() -> None:
    ranged, asked = servable_costing(modelzoo.ranged_model(), lambda n: 100)
    batcher = enable_batching(ranged, settings())
    assert batcher is not None and batcher.max_rows == 4 and asked == [1, 2, 4]
    assert batcher.delay * 1e6 == AUTO_MIN_DELAY_US
