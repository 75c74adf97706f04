"""KServe's Python model server serving the benchmark's OpenVINO models (runs in bench/.venv-kserve).

Rules: a small custom kserve.Model per model, written the way fastserve runs models so that the
comparison is about the servers, not the model execution: the same compile properties
(PERFORMANCE_HINT=LATENCY), a pool of infer requests, tiny models run inline on the loop and
slow ones through start_async with the completion handed back to the loop. It is given every
advantage KServe offers: gRPC (unless --with-grpc), per-request latency logging, the access log
and the timing middleware's log lines are off.
Usage: python bench/kserve_server.py --http_port P --model name=path/model.xml [--model ...]
       [--with-grpc --grpc_port G] (gRPC is off unless asked: the REST benchmarks must not pay for it)
(unknown flags go to KServe's own parser, which reads sys.argv when imported).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

import numpy as np
import openvino as ov

# Same threshold as fastserve's servable: below it an inference runs inline on the loop.
INLINE_THRESHOLD_US = 500
OV_TO_V2 = {"f32": "FP32", "f64": "FP64", "i32": "INT32", "i64": "INT64", "u8": "UINT8", "f16": "FP16"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="KServe Python server on OpenVINO models", add_help=False)
    parser.add_argument("--model", action="append", default=[], help="name=path/to/model.xml")
    parser.add_argument("--nireq", type=int, default=0)
    parser.add_argument("--with-grpc", dest="grpc", action="store_true",
                        help="serve KServe's gRPC port too (--grpc_port, KServe's flag)")
    return parser.parse_known_args(argv)[0]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import kserve  # after our parsing: kserve parses sys.argv at import
    from kserve import InferOutput, InferRequest, InferResponse

    class OpenVINOModel(kserve.Model):  # type: ignore[misc]
        def __init__(self, name: str, path: str, nireq: int) -> None:
            super().__init__(name)
            self.path = path
            self.nireq = nireq
            self.inline = False

        def load(self) -> bool:
            compiled = ov.Core().compile_model(self.path, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
            self.compiled = compiled
            self.input_names = [p.get_any_name() for p in compiled.inputs]
            self.outputs = [(p.get_any_name(), OV_TO_V2[p.get_element_type().get_type_name()])
                            for p in compiled.outputs]
            count = max(self.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")), 2)
            self.idle: list[ov.InferRequest] = [compiled.create_infer_request() for _ in range(count)]
            self.waiters: list[asyncio.Future[ov.InferRequest]] = []
            self.inline = self._probe_us() < INLINE_THRESHOLD_US
            self.ready = True
            return True

        def _probe_us(self) -> float:
            request = self.idle[0]
            feed = {}
            for port in self.compiled.inputs:
                shape = [max(d.get_min_length(), 1) for d in port.get_partial_shape()]
                feed[port.get_any_name()] = np.zeros(shape, dtype=port.get_element_type().to_dtype())
            request.infer(feed)
            started = time.perf_counter()
            request.infer(feed)
            return (time.perf_counter() - started) * 1e6

        async def _acquire(self) -> ov.InferRequest:
            if self.idle:
                return self.idle.pop()
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            return await waiter

        def _release(self, request: ov.InferRequest) -> None:
            while self.waiters:
                waiter = self.waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(request)
                    return
            self.idle.append(request)

        async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> Any:
            by_name = {item.name: item.as_numpy() for item in payload.inputs}
            feed = {name: by_name[name] for name in self.input_names}
            request = await self._acquire()
            try:
                if self.inline:
                    request.infer(feed)
                else:
                    loop = asyncio.get_running_loop()
                    done = loop.create_future()
                    request.set_callback(lambda _: loop.call_soon_threadsafe(_resolve, done), None)
                    request.start_async(feed)
                    await done
                # Copies: the request goes back to the pool before KServe serialises the response.
                arrays = [request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]
            finally:
                self._release(request)
            outputs = []
            for (name, datatype), array in zip(self.outputs, arrays, strict=True):
                # set_data_from_numpy, not data=array: kserve 0.21's InferResponse.to_grpc tests the
                # truth of `data` and fails on an array for a raw (binary) request.
                output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
                output.set_data_from_numpy(array, binary_data=bool(payload.use_binary_outputs))
                outputs.append(output)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=outputs,
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )

    models = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = OpenVINOModel(name, path, args.nireq)
        model.load()
        models.append(model)
    server = kserve.ModelServer(enable_grpc=args.grpc, enable_latency_logging=False, workers=1)
    # After ModelServer() has configured logging: one log line per request for access and timing.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).disabled = True
    server.start(models)
    return 0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
