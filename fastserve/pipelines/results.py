"""What a pipeline run hands back: its outputs, who still reads a model's memory, and the 0-result abort.

Rules: plain objects, no OpenVINO calls. A Hold counts the readers of one InferResult's output
memory and releases it when the last one lets go; PipelineResult.release() lets go of the
memory the response was encoded or sent from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastserve.errors import FastServeError


class NoResults(FastServeError):
    """A demultiplexer produced 0 results: OVMS answers 204 No Content."""

    status = 204

    def __init__(self, node: str) -> None:
        super().__init__(f"Pipeline execution aborted due to no content from node {node}")


class Hold:
    """Counts the readers of an InferResult's output memory; the last one out releases it."""

    __slots__ = ("result", "count")

    def __init__(self, result: Any) -> None:
        self.result = result
        self.count = 1

    def drop(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.result.release()


def drop(holds: list[Hold]) -> None:
    for hold in holds:
        hold.drop()


class PipelineResult:
    """The requested outputs; release() once they are encoded or sent (like InferResult)."""

    __slots__ = ("arrays", "_holds", "wait_us", "infer_us")

    def __init__(self, arrays: list[np.ndarray], holds: list[Hold]) -> None:
        self.arrays = arrays
        self._holds = holds
        self.wait_us = 0.0
        self.infer_us = 0.0

    def release(self) -> None:
        holds, self._holds = self._holds, []
        drop(holds)
