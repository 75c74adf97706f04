"""Load time: whether a model version is batched, and up to how many rows.

Rules: runs in the loading thread, on a compiled Servable; checks that the model can be
batched (dynamic dim 0 on every input, batch first in the layout, outputs that follow the
batch), times it at growing batch sizes, and puts a Batcher (models/batcher.py) in front of
`servable.infer`. An explicit `max_batch_size` > 0 that cannot apply is a ConfigError naming the
model and the field; unset, batching is on only where the measurement shows it pays, and the
reason for either choice is kept in `servable.batching` (the load log line, Triton's /config).
"""

from __future__ import annotations

import logging
import math
import time

from fastserve.errors import ConfigError
from fastserve.models.batcher import Batcher
from fastserve.models.servable import Servable
from fastserve.settings import ModelSettings

log = logging.getLogger("fastserve.models")

# Load-time batch-cost probe: batch sizes 1, 2, 4, ... up to max_batch_size are timed (within
# this budget, ~0.1 s for a 1 ms model); the cap is the smallest size whose cost per row is
# within PROBE_TOLERANCE of the best seen. A model whose cost grows with the rows as fast as
# running them one by one (e.g. a big convolution: batch 4 ~ 4x batch 1) gets no batching.
PROBE_BUDGET_S = 1.5
PROBE_TOLERANCE = 1.10
# Triton's --backend-config default-max-batch-size: what its auto-complete gives a model that can
# batch but names no limit; reported for OVMS's batch_size "auto" on an unbounded dim 0.
DEFAULT_MAX_BATCH_SIZE = 4
# max_batch_size unset (the default) on a model with a dynamic dim 0: batching up to AUTO_MAX_ROWS
# rows, only when a row in the cheapest batch costs at most 1/AUTO_GAIN of a batch of one
# (docs/batching.md has the measurements behind 1.5). The probe stops at the budget, and as soon
# as a batch costs no less per row than one row alone (a convolution net: two probes, not five).
AUTO_MAX_ROWS = 16
AUTO_GAIN = 1.5
AUTO_PROBE_BUDGET_S = 0.5
# The delay a default batcher gets: a group waits for the running batch, but never longer than two
# full batches take (at least uvloop's 1 ms timer resolution).
AUTO_DELAY_BATCHES = 2
AUTO_MIN_DELAY_US = 1000


def enable_batching(servable: Servable, settings: ModelSettings) -> Batcher | None:
    """Put a Batcher in front of `servable` when max_batch_size asks for one, or (unset) where it pays."""
    if settings.max_batch_size is None:
        return _by_default(servable, settings)
    if settings.max_batch_size <= 0:
        servable.batching = f"batching off ({settings.where('max_batch_size')} 0)"
        return None
    name, where = settings.name, settings.where("max_batch_size")
    unbatchable = _why_not(servable, settings)
    if unbatchable:
        sep = " " if unbatchable.startswith("needs") else ": "
        raise ConfigError(f"model {name}: {where}{sep}{unbatchable}")
    max_rows = min([settings.max_batch_size, *_bounds(servable)])  # a range a:b caps the batch
    rows, note = _probe_rows(servable, max_rows, settings)
    delay = settings.max_queue_delay_microseconds or 0
    if rows <= 1:
        servable.batching = f"batching off: no cheaper per request in batches ({note})"
        log.warning("model %s: %s %d ignored: a batch costs as much per request as one by one (%s)",
                    name, where, settings.max_batch_size, note)
        return None
    return _install(servable, rows, delay, f"batching up to {rows} rows, delay {delay} us ({note})")


def _by_default(servable: Servable, settings: ModelSettings) -> Batcher | None:
    """max_batch_size unset: batch a model with a dynamic dim 0 when the load-time probe shows it pays."""
    force = f"{settings.where('max_batch_size')} N forces it on"
    unbatchable = _why_not(servable, settings)
    if unbatchable:
        servable.batching = f"no batching: {unbatchable.split(';')[0]}"
        return None
    specs = list(servable.inputs.values())
    if any(low != high for spec in specs for low, high in (spec.dims or ())[1:]):
        servable.batching = f"batching off by default: dynamic non-batch dims, cost depends on the request ({force})"
        return None
    costs = _measure(servable, min([AUTO_MAX_ROWS, *_bounds(servable)]), AUTO_PROBE_BUDGET_S, stop_early=True)
    if isinstance(costs, str):
        servable.batching = f"batching off by default: {costs}"
        return None
    rows, gain = auto_rows(costs)
    note = _note(costs)
    if rows <= 1:
        servable.batching = (f"batching off by default: a row in a batch costs at best {gain:.2f}x less than "
                             f"alone, not the {AUTO_GAIN}x it takes ({note}; {force})")
        return None
    delay = settings.max_queue_delay_microseconds
    if delay is None:
        delay = max(AUTO_MIN_DELAY_US, math.ceil(AUTO_DELAY_BATCHES * costs[rows] / 1000) * 1000)
    text = (f"batching up to {rows} rows, delay {delay} us, on by default: a row costs {gain:.2f}x less "
            f"in a batch of {rows} ({note}; {settings.where('max_batch_size')} 0 turns it off)")
    return _install(servable, rows, delay, text)


def auto_rows(costs: dict[int, float]) -> tuple[int, float]:
    """The default decision from the probe's costs (us per batch size): the batch size to cap at (1: no
    batching) and how many times less a row costs there than alone. The cap is the smallest size within
    PROBE_TOLERANCE of the cheapest per row; batching is on when that saves AUTO_GAIN or more."""
    if 1 not in costs or len(costs) < 2:
        return 1, 1.0
    per_row = {n: us / n for n, us in costs.items()}
    best = min(per_row.values())
    rows = min(n for n, cost in per_row.items() if cost <= best * PROBE_TOLERANCE)
    gain = per_row[1] / per_row[rows] if per_row[rows] > 0 else 1.0
    if gain >= AUTO_GAIN:
        return rows, gain
    return 1, max(per_row[1] / cost for cost in per_row.values() if cost > 0)


def _install(servable: Servable, rows: int, delay: int, text: str) -> Batcher:
    # As many batches at once as OpenVINO runs (its streams). Tried: one more, queued inside
    # OpenVINO to skip the ~100 us hop back to the loop; through the server it sent mostly
    # 1-row batches (a waiting group always found room) and lost 15% at 4 connections and 10%
    # at 32 on a 0.3 ms model, against batches of 16 when the group waits for the running one.
    batcher = Batcher(servable.run, len(servable.outputs), rows, delay, servable.parallel, name=servable.name)
    servable.infer = batcher.infer
    servable.batching = text
    return batcher


def _why_not(servable: Servable, settings: ModelSettings) -> str:
    """Why requests cannot be joined along dim 0 of this model, or "" when they can."""
    for spec in sorted(servable.inputs.values(), key=lambda s: s.index):
        if not spec.dims:  # dynamic rank, or a scalar
            return (f"input {spec.name} has shape {spec.describe_shape()}, which has no batch dimension "
                    f"to join requests along")
        low, high = spec.dims[0]
        if low == high:
            return (f"needs a dynamic batch dimension (dim 0), but input {spec.name} has shape "
                    f'{spec.describe_shape()}; serve it with "batch_size": "auto" or a "shape" whose first dim is -1')
    layout = settings.layout
    texts = list(layout.values()) if isinstance(layout, dict) else [layout] if layout else []
    for text in texts:
        request_side = text.partition(":")[0].strip("[] ").replace(",", "").replace(" ", "").upper()
        if "N" in request_side and not request_side.startswith("N"):
            return f"batching joins requests along dim 0, but layout {text!r} puts the batch (N) elsewhere"
    return ""


def _bounds(servable: Servable) -> list[int]:
    """The upper bounds of ranged dims 0 (e.g. shape "(1:4,-1)")."""
    return [spec.dims[0][1] for spec in servable.inputs.values() if spec.dims and spec.dims[0][1] > 0]


def triton_max_batch_size(servable: Servable, settings: ModelSettings) -> int:
    """max_batch_size as Triton's model configuration reports it (fastserve/triton/config.py): what
    fastserve batches up to, or dim 0 made dynamic by OVMS's batch_size "auto"; else 0. Never above
    the upper bound of a ranged dim 0 (e.g. shape "(1:4,-1)"): perf_analyzer sends -b rows up to it."""
    bounded = _bounds(servable)
    batcher = getattr(servable.infer, "__self__", None)
    if isinstance(batcher, Batcher):
        return min([settings.max_batch_size or batcher.max_rows, *bounded])
    specs = [*servable.inputs.values(), *servable.outputs.values()]
    if settings.batch_size != "auto" or not all(s.dims and s.dims[0][0] != s.dims[0][1] for s in specs):
        return 0  # Triton's max_batch_size > 0 promises dim 0 is the batch on every input and output
    return min(bounded) if bounded else DEFAULT_MAX_BATCH_SIZE


def _measure(servable: Servable, max_rows: int, budget: float, stop_early: bool = False,
             settings: ModelSettings | None = None) -> dict[int, float] | str:
    """The fastest of 5 runs (us) at batch sizes 1, 2, 4, ... up to max_rows, within `budget` seconds;
    or why it cannot be measured. Outputs that do not follow the batch: a ConfigError when `settings`
    is given (max_batch_size asked for batching), else the reason. `stop_early`: stop once a batch
    costs no less per row than one row alone."""
    costs: dict[int, float] = {}
    started = time.perf_counter()
    size = 1
    while True:
        timed = servable.time_inference(size)
        if timed is None:
            break
        times, shapes = timed
        for index, shape in enumerate(shapes):
            if not shape or shape[0] != size:
                reason = (f"output {index} has shape {tuple(shape)} for a batch of {size}: batching needs "
                          f"outputs whose dim 0 is the batch")
                if settings is None:
                    return reason
                raise ConfigError(f"model {settings.name}: {settings.where('max_batch_size')}: {reason}")
        costs[size] = min(times)
        if size >= max_rows or time.perf_counter() - started > budget:
            break
        if stop_early and size > 1 and costs[size] >= size * costs[1]:
            break
        size = min(size * 2, max_rows)
    return costs or "batch cost not probed: the model fails on zero inputs"


def _note(costs: dict[int, float]) -> str:
    return "probe " + ", ".join(f"{n}: {us:.0f} us" for n, us in costs.items())


def _probe_rows(servable: Servable, max_rows: int, settings: ModelSettings) -> tuple[int, str]:
    """The batch-size cap from timing the model at growing batch sizes, and a note for the log.

    Each size's cost is the fastest of 5 runs (robust to a busy machine); sizes double up to
    max_rows within PROBE_BUDGET_S. The cap is the smallest size whose cost per row is within
    PROBE_TOLERANCE of the cheapest per row seen; 1 means batching does not pay."""
    specs = list(servable.inputs.values())
    if any(low != high for spec in specs for low, high in (spec.dims or ())[1:]):
        return max_rows, "batch cost not probed: dynamic non-batch dims"
    costs = _measure(servable, max_rows, PROBE_BUDGET_S, settings=settings)
    if isinstance(costs, str):
        return max_rows, costs
    note = _note(costs)
    per_row = {n: us / n for n, us in costs.items()}
    largest = max(costs)
    if largest < max_rows and per_row[largest] == min(per_row.values()):
        return max_rows, note  # stopped by the budget while still getting cheaper per row
    best = min(per_row.values())
    return min(n for n, cost in per_row.items() if cost <= best * PROBE_TOLERANCE), note
