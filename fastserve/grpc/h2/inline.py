"""Run a handler's coroutine inline, and make it a task only if it really has to wait.

ModelInfer on an inline model finishes without ever suspending; a task per call would cost
more than the rest of the transport. `step` runs the coroutine up to its first suspension;
`resume` hands a suspended one to a task, which continues it exactly where it stopped (the
future it is waiting on is passed on to the task, and a cancel is thrown into it).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


def step(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """(True, result) when it finished; (False, what it yielded) when it waits. Errors propagate."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, yielded


class _Resume:
    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value  # the task waits on the same future the coroutine waits on
            except BaseException as exc:  # a cancel (or close) goes to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Resume(coro, yielded)
