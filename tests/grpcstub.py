"""Raw gRPC calls for tests: fastserve's own generated messages over a plain grpcio channel.

No client library in between, so a test sees exactly the status code, the message and the
response bytes the server sent, and can send bytes no client library would.
"""

from __future__ import annotations

from typing import Any

import grpc

from fastserve.grpc.proto import inference_pb2 as pb

SERVICE = "/inference.GRPCInferenceService/"
RESPONSES = {
    "ServerLive": pb.ServerLiveResponse,
    "ServerReady": pb.ServerReadyResponse,
    "ServerMetadata": pb.ServerMetadataResponse,
    "ModelReady": pb.ModelReadyResponse,
    "ModelMetadata": pb.ModelMetadataResponse,
    "ModelInfer": pb.ModelInferResponse,
}
BIG = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class Stub:
    def __init__(self, host: str, options: list[tuple[str, Any]] | None = None) -> None:
        self.channel = grpc.insecure_channel(host, options=BIG if options is None else options)

    def call(self, method: str, request: Any, timeout: float = 30.0) -> Any:
        """The response message; raises grpc.RpcError on a non-OK status."""
        body = request if isinstance(request, bytes) else request.SerializeToString()
        raw = self.channel.unary_unary(SERVICE + method)(body, timeout=timeout)
        return RESPONSES[method].FromString(raw) if method in RESPONSES else raw

    def status(self, method: str, request: Any, timeout: float = 30.0) -> tuple[grpc.StatusCode, str]:
        """(code, details) of a call expected to fail."""
        try:
            self.call(method, request, timeout)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        raise AssertionError(f"{method} succeeded")

    def close(self) -> None:
        self.channel.close()


def infer_request(model: str, inputs: dict[str, Any], version: str = "", raw: bool = True,
                  outputs: list[str] | None = None, request_id: str = "") -> pb.ModelInferRequest:
    """A ModelInferRequest from {name: (datatype, array)}: raw_input_contents, or typed contents."""
    from fastserve.grpc.decode import _CONTENTS  # the datatype -> typed field table under test's twin

    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, (datatype, array) in inputs.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            if datatype == "BYTES":
                request.raw_input_contents.append(b"".join(
                    len(v).to_bytes(4, "little") + v for v in array.reshape(-1).tolist()))
            else:
                request.raw_input_contents.append(array.tobytes())
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(array.reshape(-1).tolist())
        else:
            field = _CONTENTS[datatype][0]
            getattr(tensor.contents, field).extend(array.reshape(-1).tolist())
    for name in outputs or []:
        request.outputs.add(name=name)
    return request


def output_arrays(response: pb.ModelInferResponse) -> dict[str, Any]:
    import numpy as np

    from fastserve.v2.datatypes import BY_NAME

    arrays = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                size = int.from_bytes(raw[offset:offset + 4], "little")
                items.append(raw[offset + 4:offset + 4 + size])
                offset += 4 + size
            arrays[tensor.name] = np.array(items, dtype=object).reshape(tuple(tensor.shape))
        else:
            arrays[tensor.name] = np.frombuffer(raw, BY_NAME[tensor.datatype].numpy).reshape(tuple(tensor.shape))
    return arrays
