"""Zero-filled inputs of a model's smallest shapes: what load-time probes (warm-up timing, output
memory checks, batch-cost probes) feed a model before any request arrives."""

from __future__ import annotations

import numpy as np

from fastserve.v2.datatypes import BYTES
from fastserve.v2.types import TensorSpec


def zero_inputs(inputs: dict[str, TensorSpec], rows: int | None) -> list[np.ndarray] | None:
    """Zero inputs of the smallest shape (`rows` as dim 0), None when the model's inputs do not allow it."""
    arrays = []
    for spec in sorted(inputs.values(), key=lambda s: s.index):
        if spec.dims is None or spec.datatype is None or (rows is not None and not spec.dims):
            return None
        shape = tuple(max(low, 1) for low, _ in spec.dims)
        if rows is not None:
            shape = (rows, *shape[1:])
        if spec.datatype is BYTES:
            arrays.append(np.full(shape, b"", dtype=object))
        else:
            arrays.append(np.zeros(shape, dtype=spec.datatype.numpy))
    return arrays
