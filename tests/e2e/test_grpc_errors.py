"""gRPC errors with OVMS's status codes and messages (src/grpc_utils.cpp), over raw stubs.

Each bad call gets its code and the same message REST sends; the channel and the server keep
working after every one of them (checked at the end of each test by a good call).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from fastserve.grpc.proto import inference_pb2 as pb
from tests.grpcstub import Stub, infer_request, output_arrays
from tests.serverproc import ServerProcess

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
A = np.arange(10, dtype=np.float32).reshape(1, 10)



@pytest.fixture(scope="session")
def server(grpc_server: ServerProcess) -> ServerProcess:
    """The zoo's server on each gRPC transport in turn (tests/conftest.py: grpc_transport)."""
    return grpc_server

@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Stub:
    return Stub(server.grpc_host)


def add_request(**changes: object) -> pb.ModelInferRequest:
    return infer_request("add", {"a": ("FP32", A), "b": ("FP32", A)}, **changes)  # type: ignore[arg-type]


def assert_still_serving(stub: Stub) -> None:
    np.testing.assert_array_equal(output_arrays(stub.call("ModelInfer", add_request()))["sum"], 2 * A)


@pytest.mark.parametrize("method, message", [
    ("ModelInfer", infer_request("nope", {"a": ("FP32", A)})),
    ("ModelReady", pb.ModelReadyRequest(name="nope")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="nope")),
])
def test_unknown_model_is_not_found(stub: Stub, method: str, message: object) -> None:
    assert stub.status(method, message) == (NOT_FOUND, "Model with requested name is not found")
    assert_still_serving(stub)


@pytest.mark.parametrize("method, message", [
    ("ModelInfer", add_request(version="7")),
    ("ModelReady", pb.ModelReadyRequest(name="add", version="7")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="add", version="7")),
])
def test_unknown_version_is_not_found(stub: Stub, method: str, message: object) -> None:
    assert stub.status(method, message) == (NOT_FOUND, "Model with requested version is not found")


@pytest.mark.parametrize("version", ["x", "1.5", "1a", " "])
@pytest.mark.parametrize("method", ["ModelInfer", "ModelReady", "ModelMetadata"])
def test_a_version_that_is_not_a_number_is_invalid(stub: Stub, method: str, version: str) -> None:
    request = {"ModelInfer": add_request(version=version),
               "ModelReady": pb.ModelReadyRequest(name="add", version=version),
               "ModelMetadata": pb.ModelMetadataRequest(name="add", version=version)}[method]
    assert stub.status(method, request) == (INVALID, "invalid model version format in request")


def test_version_zero_is_the_default_version(stub: Stub) -> None:
    assert stub.call("ModelInfer", add_request(version="0")).model_version == "1"


def bad_requests() -> list[tuple[str, pb.ModelInferRequest, str]]:
    cases = []
    missing = infer_request("add", {"a": ("FP32", A)})
    cases.append(("missing input", missing, "Missing input with specific name - Required input: b"))
    extra = infer_request("add", {"a": ("FP32", A), "b": ("FP32", A), "c": ("FP32", A)})
    cases.append(("extra input", extra, "Invalid number of inputs - Expected: 2; Actual: 3"))
    wrong_type = infer_request("add", {"a": ("FP64", A.astype(np.float64)), "b": ("FP32", A)})
    cases.append(("datatype", wrong_type, "Invalid input precision - Expected: FP32; Actual: FP64; input name: a"))
    rank = infer_request("add", {"a": ("FP32", A.reshape(10)), "b": ("FP32", A)})
    cases.append(("rank", rank, "Invalid number of shape dimensions - Expected: (1,10); Actual: (10); input name: a"))
    shape = infer_request("add", {"a": ("FP32", np.zeros((1, 9), np.float32)), "b": ("FP32", A)})
    cases.append(("shape", shape, "Invalid input shape - Expected: (1,10); Actual: (1,9); input name: a"))
    short = add_request()
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    cases.append(("raw size", short,
                  "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: a"))
    fewer = add_request()
    del fewer.raw_input_contents[1]
    cases.append(("raw count", fewer,
                  "Invalid message structure - Size of raw_input_contents: 1 is different than number of inputs: 2"))
    mixed = add_request()
    mixed.inputs[1].contents.fp32_contents.extend([1.0] * 10)
    cases.append(("raw and contents", mixed, "Passing buffers both in InferInputTensor contents and in "
                  "raw_input_contents is not allowed. Detected buffer in InferInputTensor contents for input: b"))
    count = infer_request("add", {"a": ("FP32", A), "b": ("FP32", A)}, raw=False)
    del count.inputs[0].contents.fp32_contents[-1]
    cases.append(("typed count", count, "Invalid number of values in tensor proto container - Expected: 10 values; "
                  "Actual: 9 values; input name: a"))
    fp16 = pb.ModelInferRequest(model_name="identity_fp16")
    fp16.inputs.add(name="in", datatype="FP16", shape=[1, 1]).contents.fp32_contents.append(1.0)
    cases.append(("FP16 typed", fp16, "FP16 has no typed contents field"))
    int8 = infer_request("identity_int8", {"in": ("INT8", np.zeros((1, 1), np.int8))}, raw=False)
    int8.inputs[0].contents.int_contents[0] = 300
    cases.append(("INT8 range", int8, "in"))
    datatype = add_request()
    datatype.inputs[0].datatype = "FLOAT"
    cases.append(("datatype name", datatype, "Unsupported data precision detected - 'FLOAT' for input a"))
    negative = add_request()
    negative.inputs[0].shape[0] = -1
    cases.append(("negative dim", negative, "shape of input a must be a list of integers >= 0"))
    output = add_request(outputs=["nope"])
    cases.append(("unknown output", output, "Unknown output name: nope"))
    no_inputs = pb.ModelInferRequest(model_name="add")
    cases.append(("no inputs", no_inputs, "the request has no inputs"))
    strings = pb.ModelInferRequest(model_name="string")
    strings.inputs.add(name="text", datatype="BYTES", shape=[2])
    cases.append(("empty bytes contents", strings, "Bytes contents is empty"))
    framing = infer_request("string", {"text": ("BYTES", np.array([b"ab"], dtype=object))})
    framing.raw_input_contents[0] = b"\x09\x00\x00\x00ab"
    cases.append(("BYTES framing", framing, "Batch length metadata exceeded buffer size in input text"))
    return cases


@pytest.mark.parametrize("case", bad_requests(), ids=lambda case: case[0])
def test_bad_inputs_are_invalid_argument_with_rests_message(stub: Stub, case: tuple) -> None:
    _, request, message = case
    code, details = stub.status("ModelInfer", request)
    assert code == INVALID and message in details, details
    assert_still_serving(stub)


def test_bytes_that_are_not_a_message_are_internal(stub: Stub) -> None:
    code, details = stub.status("ModelInfer", b"\xff\xff\xff\xff")
    assert code == grpc.StatusCode.INTERNAL and "not a valid ModelInferRequest" in details
    code, _ = stub.status("ModelReady", b"\xff\xff\xff\xff")
    assert code == grpc.StatusCode.INTERNAL  # grpcio's own answer to an undecodable request
    assert_still_serving(stub)


def test_a_failed_inference_is_internal(stub: Stub) -> None:
    request = infer_request("failing", {"x": ("FP32", np.arange(6, dtype=np.float32)),
                                        "shape": ("INT64", np.array([4, 4], np.int64))})
    code, details = stub.status("ModelInfer", request)
    assert code == grpc.StatusCode.INTERNAL and details.startswith("Internal inference error"), details
    assert_still_serving(stub)


@pytest.mark.parametrize("method", ["RepositoryIndex", "TraceSetting", "LogSettings", "CudaSharedMemoryStatus"])
def test_other_methods_of_the_service_are_unimplemented_with_a_message(stub: Stub, method: str) -> None:
    code, details = stub.status(method, b"")
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert details == f"inference.GRPCInferenceService/{method} is not implemented by fastserve"


def test_a_stream_method_is_unimplemented_and_does_not_hang(stub: Stub) -> None:
    call = stub.channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")(iter([b""]), timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_an_unknown_service_is_unimplemented(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.channel.unary_unary("/no.Such/Method")(b"", timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
