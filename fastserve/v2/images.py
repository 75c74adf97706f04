"""Encoded image inputs (JPEG/PNG as BYTES to a 4-D NHWC input). Built in the binary-data issue."""

from __future__ import annotations

import numpy as np

from fastserve.errors import InvalidInput
from fastserve.v2.types import InferInput, TensorSpec


def decode_images(elements: list[bytes] | list[str], item: InferInput, spec: TensorSpec) -> np.ndarray:
    raise InvalidInput(f"Encoded image inputs are not supported yet (input {item.name})")
