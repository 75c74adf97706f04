"""BF16 as numbers: fastserve carries BF16 tensors as uint16 bit patterns (numpy has no bfloat16);
only JSON needs their values, so the conversions live here.

BF16 is the top half of an FP32: widening is a shift, narrowing rounds to nearest, ties to
even, as OpenVINO and PyTorch round.
"""

from __future__ import annotations

import numpy as np


def from_float32(values: np.ndarray) -> np.ndarray:
    """FP32 values -> BF16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16
    nan = np.isnan(values)
    if nan.any():
        rounded = np.where(nan, (bits >> 16) | 0x40, rounded)  # a quiet NaN, whatever its low bits
    return rounded.astype(np.uint16)


def to_float32(bits: np.ndarray) -> np.ndarray:
    """BF16 bit patterns (any 2-byte dtype) -> their exact FP32 values."""
    return (np.ascontiguousarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
