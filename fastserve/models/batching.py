"""Load time: whether a model version is batched, and up to how many rows.

Rules: runs in the loading thread, on a compiled Servable; checks that the model can be
batched (dynamic dim 0 on every input, batch first in the layout, outputs that follow the
batch) with ConfigErrors naming the model and the config field, times it at growing batch
sizes, and puts a Batcher (models/batcher.py) in front of `servable.infer`.
"""

from __future__ import annotations

import logging
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


def enable_batching(servable: Servable, settings: ModelSettings) -> Batcher | None:
    """Put a Batcher in front of `servable` when max_batch_size asks for one; ConfigError if it cannot batch."""
    if settings.max_batch_size <= 0:
        return None
    name, where = settings.name, settings.where("max_batch_size")
    max_rows = settings.max_batch_size
    for spec in sorted(servable.inputs.values(), key=lambda s: s.index):
        if not spec.dims:  # dynamic rank, or a scalar
            raise ConfigError(f"model {name}: {where}: input {spec.name} has shape {spec.describe_shape()}, "
                              f"which has no batch dimension to join requests along")
        low, high = spec.dims[0]
        if low == high:
            raise ConfigError(
                f"model {name}: {where} needs a dynamic batch dimension (dim 0), but input {spec.name} has shape "
                f'{spec.describe_shape()}; serve it with "batch_size": "auto" or a "shape" whose first dim is -1'
            )
        if high != -1:
            max_rows = min(max_rows, high)  # a range a:b caps the batch
    _check_layout(settings)
    rows, note = _probe_rows(servable, max_rows, settings)
    delay = settings.max_queue_delay_microseconds
    if rows <= 1:
        servable.batching = f"batching off: no cheaper per request in batches ({note})"
        log.warning("model %s: %s %d ignored: a batch costs as much per request as one by one (%s)",
                    name, where, settings.max_batch_size, note)
        return None
    # As many batches at once as OpenVINO runs (its streams). Tried: one more, queued inside
    # OpenVINO to skip the ~100 us hop back to the loop; through the server it sent mostly
    # 1-row batches (a waiting group always found room) and lost 15% at 4 connections and 10%
    # at 32 on a 0.3 ms model, against batches of 16 when the group waits for the running one.
    batcher = Batcher(servable.run, len(servable.outputs), rows, delay, servable.parallel, name=name)
    servable.infer = batcher.infer
    servable.batching = f"batching up to {rows} rows, delay {delay} us ({note})"
    return batcher


def triton_max_batch_size(servable: Servable, settings: ModelSettings) -> int:
    """max_batch_size as Triton's model configuration reports it (fastserve/triton/config.py): what
    fastserve batches up to, or dim 0 made dynamic by OVMS's batch_size "auto"; else 0. Never above
    the upper bound of a ranged dim 0 (e.g. shape "(1:4,-1)"): perf_analyzer sends -b rows up to it."""
    bounded = [spec.dims[0][1] for spec in servable.inputs.values() if spec.dims and spec.dims[0][1] > 0]
    batcher = getattr(servable.infer, "__self__", None)
    if isinstance(batcher, Batcher):
        return min([settings.max_batch_size, *bounded])
    specs = [*servable.inputs.values(), *servable.outputs.values()]
    if settings.batch_size != "auto" or not all(s.dims and s.dims[0][0] != s.dims[0][1] for s in specs):
        return 0  # Triton's max_batch_size > 0 promises dim 0 is the batch on every input and output
    return min(bounded) if bounded else DEFAULT_MAX_BATCH_SIZE


def _check_layout(settings: ModelSettings) -> None:
    layout = settings.layout
    texts = list(layout.values()) if isinstance(layout, dict) else [layout] if layout else []
    for text in texts:
        request_side = text.partition(":")[0].strip("[] ").replace(",", "").replace(" ", "").upper()
        if "N" in request_side and not request_side.startswith("N"):
            raise ConfigError(f"model {settings.name}: {settings.where('max_batch_size')}: batching joins requests "
                              f"along dim 0, but layout {text!r} puts the batch (N) elsewhere")


def _probe_rows(servable: Servable, max_rows: int, settings: ModelSettings) -> tuple[int, str]:
    """The batch-size cap from timing the model at growing batch sizes, and a note for the log.

    Each size's cost is the fastest of 5 runs (robust to a busy machine); sizes double up to
    max_rows within PROBE_BUDGET_S. The cap is the smallest size whose cost per row is within
    PROBE_TOLERANCE of the cheapest per row seen; 1 means batching does not pay."""
    specs = list(servable.inputs.values())
    if any(low != high for spec in specs for low, high in (spec.dims or ())[1:]):
        return max_rows, "batch cost not probed: dynamic non-batch dims"
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
                raise ConfigError(
                    f"model {settings.name}: {settings.where('max_batch_size')}: output {index} has shape "
                    f"{tuple(shape)} for a batch of {size}: batching needs outputs whose dim 0 is the batch"
                )
        costs[size] = min(times)
        if size >= max_rows or time.perf_counter() - started > PROBE_BUDGET_S:
            break
        size = min(size * 2, max_rows)
    if not costs:
        return max_rows, "batch cost not probed: the model fails on zero inputs"
    note = "probe " + ", ".join(f"{n}: {us:.0f} us" for n, us in costs.items())
    per_row = {n: us / n for n, us in costs.items()}
    largest = max(costs)
    if largest < max_rows and per_row[largest] == min(per_row.values()):
        return max_rows, note  # stopped by the budget while still getting cheaper per row
    best = min(per_row.values())
    return min(n for n, cost in per_row.items() if cost <= best * PROBE_TOLERANCE), note
