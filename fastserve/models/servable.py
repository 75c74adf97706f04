"""One served model version: its compiled model, a pool of infer requests, and how it runs them.

Rules: knows OpenVINO and numpy, never HTTP or JSON. Input arrays arrive already validated
(v2.validate). Output arrays handed back are views into the infer request's own memory: the
caller encodes them and then calls InferResult.release(), so the request is not reused while
its outputs are still being read or sent (zero-copy binary outputs keep it until the
transport has drained).

Execution, chosen per version at load (docs/batching.md has the measurements):
- inline: `infer()` runs on the event-loop thread. For short models this is cheapest: the
  async hop adds 65-85 us of latency here (OpenVINO's callback thread taking the GIL) against
  ~35 us for a whole tiny inference.
- async: `start_async()`; OpenVINO's callback thread hands completion back to the loop with
  call_soon_threadsafe, so the loop keeps parsing other requests while the model runs.
`execution_mode: auto` (the default) times a warm-up inference, goes inline below
INLINE_THRESHOLD_US, and keeps adapting to the inference times it sees (SLOW_US).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import numpy as np
import openvino as ov

from fastserve.core.target import every_output
from fastserve.errors import InferenceFailed
from fastserve.models.pool import SlotPool
from fastserve.models.slots import (
    InferResult,
    Slot,
    infer_public,
    infer_sync,
    infer_waiting,
    one_thread_hides_failures,
    runs_one_thread,
    tensor_spec,
)
from fastserve.models.zeros import zero_inputs
from fastserve.triton.stats import InferStats
from fastserve.v2.datatypes import BYTES
from fastserve.v2.encode import EveryJson
from fastserve.v2.fastjson import FastJson
from fastserve.v2.images import image_input_bytes
from fastserve.v2.types import InferRequest, TensorSpec
from fastserve.v2.validate import bind_inputs

__all__ = ["InferResult", "Servable"]

log = logging.getLogger("fastserve.models")

# Below this warm-up latency a model runs inline on the loop. Measured through the server (16
# connections, MLPs of growing cost, bench/execution_probe.py): inline ahead by 22-28% at 60-130
# us and 4-8% at 230-330 us, async ahead by ~19% from 0.6 ms on. Blocking the loop for 0.5 ms
# also delays other connections by at most that much.
INLINE_THRESHOLD_US = 500
# `auto` keeps adapting after the probe, which sees the smallest shape only: real shapes, or
# batches, can cost far more (a 64x64 convolution net probes at 61 us on a 1x1 image and takes
# 6 ms on real ones), and a probe on a busy machine can come out far too slow. A score moves
# by one per inference: inline, up when slower than SLOW_US and down when faster than the
# threshold; async (its times include the ~70 us hop), down when faster than FAST_ASYNC_US and
# up when slower than the threshold. At `switch_at` an inline model goes async, at 0 an async
# one comes back inline, and each switch doubles `switch_at` (8, 16, ... 1024), so a model
# near the threshold on a busy machine settles instead of flip-flopping (seen: every ~10 runs
# at load average 7). A tiny model preempted now and then stays inline; a 6 ms one moves after 8.
SLOW_US = 4 * INLINE_THRESHOLD_US
FAST_ASYNC_US = INLINE_THRESHOLD_US // 4
SWITCH_SCORE = 8
MAX_SWITCH_SCORE = 1024
# Inputs at least this large are wrapped in place (ov.Tensor shared_memory) instead of being
# copied into the request's own tensor: set_tensor costs ~25 us, a 256 KiB copy about the same.
SHARE_INPUT_BYTES = 256 * 1024
# OpenVINO's Python callback runs only when an inference succeeds; a failed one is found by
# polling wait_for(0) (~1.5 us a request) every 5 ms while any async inference of the version
# runs: one timer per version, not one per inference (a timer per inference plus a shield cost
# ~15-20 us of loop CPU per request). The interval is twice the inferences' time (5-100 ms): a
# fixed 5 ms woke the loop ~5 times per ResNet-50 inference, each preempting an OpenVINO thread.
FAILURE_POLL_S = 0.005
MAX_FAILURE_POLL_S = 0.1


class Servable:
    def __init__(
        self, name: str, version: int, compiled: ov.CompiledModel, nireq: int, mode: str, static: bool = False
    ) -> None:
        # static: every shape of the source model is static (slots.fully_static), so infer() cannot fail.
        self.name = name
        self.version = version
        self.version_text = str(version)
        self.static = static
        self.compiled = compiled
        input_specs = [tensor_spec(port, i) for i, port in enumerate(compiled.inputs)]
        output_specs = [tensor_spec(port, i) for i, port in enumerate(compiled.outputs)]
        self.inputs: dict[str, TensorSpec] = {s.name: s for s in sorted(input_specs, key=lambda s: s.name)}
        # The core's inference target (fastserve/core/target.py): bind(decoded), image_bytes(decoded).
        # Partials, not methods: no Python frame of their own on every request.
        self.bind: Callable[[InferRequest], list[np.ndarray]] = partial(bind_inputs, specs=self.inputs)
        self.image_bytes: Callable[[InferRequest], int] = partial(image_input_bytes, specs=self.inputs)
        # The REST fast path for the common JSON request (decode and bind at once), None if it cannot apply.
        self.fast_json: FastJson | None = FastJson.build(self.inputs)
        self.outputs: dict[str, TensorSpec] = {s.name: s for s in sorted(output_specs, key=lambda s: s.name)}
        self.every_output = every_output(self.outputs)  # the core's selection when a request names none
        self.every_json = EveryJson.build(name, self.version_text, self.every_output[0][0])  # its REST encoder
        self._input_types = [port.get_element_type() for port in compiled.inputs]
        self._string_inputs = [spec.datatype is BYTES for spec in input_specs]
        self._string_outputs = [spec.datatype is BYTES for spec in output_specs]
        # bf16 tensors' .data is a float16 view of their bits: fastserve holds them as uint16 (datatypes.py).
        self._bf16_inputs = [t == ov.Type.bf16 for t in self._input_types]
        self._bf16_outputs = [port.get_element_type() == ov.Type.bf16 for port in compiled.outputs]
        self._infer_sync = infer_public if any(self._string_outputs) else infer_sync
        if mode != "async" and runs_one_thread(compiled) and not static and one_thread_hides_failures():
            # A failed inline inference would pass unnoticed and stall the next ones, which then return
            # stale outputs (slots.one_thread_hides_failures): the async path reports failures.
            log.warning("model %s version %d: one stream of one thread on this OpenVINO: running async, not %s",
                        name, version, mode)
            mode = "async"
            self._infer_sync = infer_waiting  # the load-time runs
        if nireq <= 0:
            nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        # At least two: a zero-copy binary response holds its request until the socket drains.
        self.nireq = max(nireq, 2)
        slots = []
        for _ in range(self.nireq):
            slot = Slot(compiled.create_infer_request(), len(input_specs), len(output_specs), self._finish)
            slot.request.set_callback(_on_done, slot)
            slots.append(slot)
        self.pool: SlotPool[Slot] = SlotPool(slots, name)  # queue bound and wait timeout: pool.LIMITS
        self.running: set[Slot] = set()  # async inferences started and not yet finished
        self.poll: asyncio.TimerHandle | None = None  # the failure poll while any is running
        self.poll_s = FAILURE_POLL_S  # its interval: a running average of the async inferences' times
        # Inferences OpenVINO runs at once (its streams): 1 under the LATENCY hint. A Batcher holds
        # a batch back only while this many of its batches run.
        self.parallel = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        # Read here, in the loader's thread: on the loop, OpenVINO's get_property can wait for a
        # running inference (a first /metrics scrape stalled the loop ~3 s behind one).
        self.streams = _num_streams(compiled)
        self._fixed_outputs = self._outputs_that_stay_put()
        self.probe_us = self._probe() if mode != "async" else None
        self.auto = mode == "auto"
        if mode == "auto":
            self.inline = self.probe_us is not None and self.probe_us < INLINE_THRESHOLD_US
        else:
            self.inline = mode == "inline"
        self.switch_at = SWITCH_SCORE  # see SLOW_US
        self.score = 0 if self.inline else SWITCH_SCORE
        # What the handlers call: run() itself, or a Batcher in front of it (models/batcher.py).
        self.infer: Callable[[list[np.ndarray], list[int]], InferResult | Awaitable[InferResult]] = self.run
        self.batching = ""  # the Batcher's settings, for the load log line
        self.stats = InferStats()  # Triton's statistics extension, filled by the core (always on)

    def describe_execution(self) -> str:
        """For the load log line, e.g. "inline, nireq 2, warm-up 35 us"."""
        text = f"{'inline' if self.inline else 'async'}, nireq {self.nireq}"
        if self.probe_us is not None:
            text += f", warm-up {self.probe_us:.0f} us"
        return text + (f", {self.batching}" if self.batching else "")

    # Running

    def run(self, arrays: list[np.ndarray], wanted: list[int]) -> InferResult | Awaitable[InferResult]:
        """Run one inference; a result now when inline and a request is free, else an awaitable."""
        if self.inline:
            slot = self.pool.try_acquire()
            if slot is not None:
                return self._run_inline(slot, arrays, wanted, 0.0)
        return self._run_async(arrays, wanted)

    def _run_inline(self, slot: Slot, arrays: list[np.ndarray], wanted: list[int], wait_us: float) -> InferResult:
        started = time.perf_counter()
        try:
            self._set_inputs(slot, arrays)
            self._infer_sync(slot.request)
        except Exception as exc:  # whatever fails, the infer request goes back to the pool
            self.pool.release(slot)
            if isinstance(exc, RuntimeError):
                raise InferenceFailed(_short(exc)) from None
            raise
        infer_us = (time.perf_counter() - started) * 1e6
        if self.auto and (infer_us > SLOW_US or self.score and infer_us < INLINE_THRESHOLD_US):
            self.adapt(infer_us)
        return InferResult(self._outputs(slot, wanted), slot, self.pool, wait_us, infer_us)

    def adapt(self, infer_us: float) -> None:
        """`auto`: move to async when inferences are mostly slow, back inline when mostly fast."""
        if self.inline:
            step = 1 if infer_us > SLOW_US else -1 if infer_us < INLINE_THRESHOLD_US else 0
        else:
            step = -1 if infer_us < FAST_ASYNC_US else 1 if infer_us > INLINE_THRESHOLD_US else 0
        self.score = min(max(self.score + step, 0), self.switch_at)
        if self.inline and self.score == self.switch_at or not self.inline and self.score == 0:
            self.inline = not self.inline
            self.switch_at = min(self.switch_at * 2, MAX_SWITCH_SCORE)
            log.info("model %s version %d: inferences take %.0f us (warm-up %.0f us): running %s from now on",
                     self.name, self.version, infer_us, self.probe_us or 0, "inline" if self.inline else "async")

    async def _run_async(self, arrays: list[np.ndarray], wanted: list[int]) -> InferResult:
        queued = time.perf_counter()
        slot = self.pool.try_acquire() or await self.pool.acquire()
        started = time.perf_counter()
        wait_us = (started - queued) * 1e6
        if self.inline:
            return self._run_inline(slot, arrays, wanted, wait_us)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        slot.future, slot.loop = future, loop
        try:
            self._set_inputs(slot, arrays)
            slot.request.start_async()
        except RuntimeError as exc:
            slot.future = None
            self._give_back(slot)
            raise InferenceFailed(_short(exc)) from None
        self.running.add(slot)
        if self.poll is None:
            self.poll = loop.call_later(self.poll_s, self._poll_failures)
        # Not shielded: if our caller is cancelled the future is cancelled too, and _finish gives
        # the slot back once OpenVINO is really done with it.
        try:
            await future
        except InferenceFailed:
            self._give_back(slot)
            raise
        infer_us = (time.perf_counter() - started) * 1e6
        poll_s = self.poll_s
        self.poll_s = poll_s + (min(max(infer_us * 2e-6, FAILURE_POLL_S), MAX_FAILURE_POLL_S) - poll_s) * 0.125
        if self.auto and (infer_us < FAST_ASYNC_US or self.score < self.switch_at and infer_us > INLINE_THRESHOLD_US):
            self.adapt(infer_us)
        return InferResult(self._outputs(slot, wanted), slot, self.pool, wait_us, infer_us)

    def _finish(self, slot: Slot, error: InferenceFailed | None = None) -> None:
        """Loop side of a finished async inference: wake its caller, or give the slot back if it left."""
        self.running.discard(slot)
        future, slot.future = slot.future, None
        if future is None:
            return
        if future.cancelled():
            self._give_back(slot)
        elif error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def _poll_failures(self) -> None:
        """Loop timer: fail the inferences that raised inside OpenVINO (their callback never runs)."""
        self.poll = None
        for slot in list(self.running):
            try:
                slot.request.wait_for(0)  # returns at once; raises the inference's error once it has failed
            except RuntimeError as exc:
                self._finish(slot, InferenceFailed(_short(exc)))
        if self.running:
            loop = next(iter(self.running)).loop
            assert loop is not None
            self.poll = loop.call_later(self.poll_s, self._poll_failures)

    def _give_back(self, slot: Slot) -> None:
        slot.keep[:] = [None] * len(slot.keep)
        self.pool.release(slot)

    def _set_inputs(self, slot: Slot, arrays: list[np.ndarray], share: bool = True) -> None:
        request = slot.request
        for index, array in enumerate(arrays):
            if self._string_inputs[index]:
                tensor = ov.Tensor(ov.Type.string, list(array.shape))
                if array.size:  # the bindings refuse [] for an empty batch; its tensor needs no data
                    tensor.bytes_data = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
                request.set_input_tensor(index, tensor)
                slot.foreign[index] = True
                slot.views[index] = None
            elif share and array.nbytes >= SHARE_INPUT_BYTES and array.flags.c_contiguous and array.flags.writeable:
                request.set_input_tensor(index, ov.Tensor(array, list(array.shape), ov.Type.bf16)
                                         if self._bf16_inputs[index] else ov.Tensor(array, shared_memory=True))
                slot.keep[index] = array
                slot.foreign[index] = True
                slot.views[index] = None
            else:
                view = slot.views[index]
                if view is None or view.shape != array.shape:
                    view = slot.views[index] = self._own_input(slot, index, array.shape)
                view[...] = array

    def _own_input(self, slot: Slot, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """The request's own tensor for input `index`, shaped `shape`, as a numpy view over its memory."""
        request = slot.request
        if slot.foreign[index]:
            tensor = ov.Tensor(self._input_types[index], list(shape))
            request.set_input_tensor(index, tensor)
            slot.foreign[index] = False
        else:
            tensor = request.get_input_tensor(index)
            if tuple(tensor.shape) != shape:
                tensor.shape = list(shape)  # may move its memory: hence a new view
        return tensor.data.view(np.uint16) if self._bf16_inputs[index] else tensor.data

    def _outputs(self, slot: Slot, wanted: list[int]) -> list[np.ndarray]:
        request = slot.request
        out = []
        for index in wanted:
            if self._fixed_outputs[index]:
                view = slot.out_views[index]
                if view is None:
                    view = request.get_output_tensor(index).data
                    view = slot.out_views[index] = view.view(np.uint16) if self._bf16_outputs[index] else view
                out.append(view)
                continue
            tensor = request.get_output_tensor(index)
            if self._bf16_outputs[index]:
                out.append(tensor.data.view(np.uint16))
            elif not self._string_outputs[index]:
                out.append(tensor.data)
            elif tensor.size:
                out.append(np.asarray(tensor.bytes_data, dtype=object))
            else:  # bytes_data of an empty string tensor raises TypeError in the bindings (2026.4)
                out.append(np.empty(tuple(tensor.shape), dtype=object))
        return out

    def _outputs_that_stay_put(self) -> list[bool]:
        """Static outputs whose memory two inferences leave in place (the CPU plugin allocates them once),
        so each slot may keep their views. Dynamic outputs move when their shape grows. Loading only."""
        static = [spec.dims is not None and all(lo == hi for lo, hi in spec.dims) and spec.datatype is not BYTES
                  for spec in sorted(self.outputs.values(), key=lambda s: s.index)]
        arrays = zero_inputs(self.inputs, None)
        if not any(static) or arrays is None:
            return [False] * len(static)
        slot = self.pool.try_acquire()
        assert slot is not None
        try:
            self._set_inputs(slot, arrays)
            addresses = []
            for _ in range(2):
                self._infer_sync(slot.request)
                addresses.append([slot.request.get_output_tensor(i).data.ctypes.data if fixed else 0
                                  for i, fixed in enumerate(static)])
            return [fixed and first == second for fixed, first, second in zip(static, *addresses, strict=True)]
        except RuntimeError as exc:
            log.debug("%s: output memory check failed: %s", self.name, _short(exc))
            return [False] * len(static)
        finally:
            slot.keep[:] = [None] * len(slot.keep)
            self.pool.release(slot)

    # Loading

    def _probe(self) -> float | None:
        """Fastest of a few inferences on zero inputs of the smallest shape; None if it fails. The minimum,
        not the median: on a busy machine the median of 5 can be several times the model's own cost."""
        timed = self.time_inference(None)
        return None if timed is None else min(timed[0])

    def time_inference(self, rows: int | None, repeats: int = 5) -> tuple[list[float], list[tuple[int, ...]]] | None:
        """The us of `repeats` inferences (after one warm-up) on zero inputs of the smallest shape, with
        `rows` as dim 0, and the output shapes; None if the model cannot be fed or fails. Loading only."""
        arrays = zero_inputs(self.inputs, rows)
        if arrays is None:
            return None
        slot = self.pool.try_acquire()
        assert slot is not None
        try:
            # Copied, never wrapped: after a probe on wrapped zeros of 8+ rows, the next requests of that slot
            # got other requests' answers under concurrency (heavy model, async; tests/e2e/test_concurrency.py).
            self._set_inputs(slot, arrays, share=False)
            self._infer_sync(slot.request)  # the first run allocates and warms caches
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                self._infer_sync(slot.request)
                times.append((time.perf_counter() - started) * 1e6)
            shapes = [tuple(slot.request.get_output_tensor(i).shape) for i in range(len(self.outputs))]
            return times, shapes
        except RuntimeError as exc:
            log.debug("timing %s at %s rows failed: %s", self.name, rows, _short(exc))
            return None
        finally:
            slot.keep[:] = [None] * len(slot.keep)
            self.pool.release(slot)


def _num_streams(compiled: ov.CompiledModel) -> int | None:
    try:
        return int(compiled.get_property("NUM_STREAMS"))
    except (RuntimeError, TypeError, ValueError):
        return None  # not every device reports it


def _on_done(slot: Slot) -> None:
    """OpenVINO's callback thread (only after a success): wake the loop, nothing more (the GIL is contended)."""
    loop = slot.loop
    if loop is not None:
        loop.call_soon_threadsafe(slot.finish, slot)


def _short(exc: BaseException) -> str:
    """OpenVINO's messages carry a stack of source locations; keep the last meaningful line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__
