"""Top-k over the last axis: turns a classifier's scores into labels.

inputs:
  scores   FP32, any shape [..., C]
outputs:
  indices  INT32 [..., k]: the k best classes, best first
  values   FP32 [..., k]: their scores
params:
  k        how many (default 1: argmax); at most C
"""

from __future__ import annotations

import numpy as np

RUN_INLINE = True  # a few microseconds of numpy: a thread hop would cost more


def inputs_info(params: dict[str, str]) -> dict[str, tuple[str, list[int] | None]]:
    return {"scores": ("FP32", None)}


def outputs_info(params: dict[str, str]) -> dict[str, tuple[str, list[int] | None]]:
    return {"indices": ("INT32", None), "values": ("FP32", None)}


def execute(inputs: dict[str, np.ndarray], params: dict[str, str]) -> dict[str, np.ndarray]:
    scores = inputs["scores"]
    k = int(params.get("k", "1"))
    if scores.ndim == 0 or not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k={k} needs scores with a last dimension of at least {k}; got shape {list(scores.shape)}")
    if k == 1:
        indices = np.argmax(scores, axis=-1)[..., None]
    else:
        # Stable descending order: equal scores keep the lower class first, as argmax does.
        indices = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    values = np.take_along_axis(scores, indices, axis=-1)
    return {"indices": indices.astype(np.int32), "values": values.astype(np.float32)}
