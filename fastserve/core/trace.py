"""Phase times of one inference, for metrics and Server-Timing: filled by the core when asked."""

from __future__ import annotations

from time import perf_counter
from typing import Any


class Trace:
    """Timestamps of one request's phases; `target` is the model version it ran on, if any."""

    __slots__ = ("target", "decoded", "inferred", "wait_us", "infer_us")

    def __init__(self) -> None:
        self.target: Any = None  # set once the model version is found (pipelines: None, not counted)
        self.decoded = 0.0  # perf_counter() when the inputs were ready for the model
        self.inferred = 0.0  # perf_counter() when the outputs were back
        self.wait_us = 0.0
        self.infer_us = 0.0

    def record(self, wait_us: float, infer_us: float) -> None:
        self.inferred = perf_counter()
        self.wait_us = wait_us
        self.infer_us = infer_us
