"""BF16 end to end: a model with bf16 input and output (x * 2 computed in bf16, built here).

BF16 travels as raw 2-byte patterns: REST's binary extension and gRPC's raw_input_contents /
raw_output_contents, bit for bit (tritonclient, which uses ml_dtypes.bfloat16, both ways).
JSON carries numbers: they are rounded to BF16 on the way in and widened exactly on the way out.
gRPC has no typed contents field for BF16, so typed contents get INVALID_ARGUMENT saying so.
OVMS has no KServe name for bf16 (metadata "INVALID"); fastserve serves it as Triton names it.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import ml_dtypes
import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from fastserve.v2 import bf16
from tests.grpcstub import Stub, infer_request
from tests.rawhttp import post_json
from tests.serverproc import ServerProcess

VALUES = np.array([[1.5, -2.25, 3.0, 100.0, 1e30, -0.0078125, 65504.0, 3.3895314e38 / 4]], np.float32)


def double_bf16_model() -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, -1]), ov.Type.bf16, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.multiply(x, ops.convert(ops.constant(np.float32(2)), "bf16"))
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y.output(0)], [x], "double_bf16")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("bf16") / "double"
    ov.save_model(double_bf16_model(), base / "1" / "model.xml", compress_to_fp16=False)
    with ServerProcess("--model_name", "double", "--model_path", str(base), grpc=True) as proc:
        yield proc


def doubled(values: np.ndarray) -> np.ndarray:
    return (values.astype(ml_dtypes.bfloat16).astype(np.float32) * 2).astype(ml_dtypes.bfloat16)


def test_conversions_round_to_nearest_even_as_ml_dtypes() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([VALUES.ravel(), rng.standard_normal(10000).astype(np.float32) * 1e3,
                             np.array([np.inf, -np.inf, 0.0], np.float32)])
    bits = bf16.from_float32(values)
    assert bits.dtype == np.uint16
    np.testing.assert_array_equal(bits, values.astype(ml_dtypes.bfloat16).view(np.uint16))
    np.testing.assert_array_equal(bf16.to_float32(bits), values.astype(ml_dtypes.bfloat16).astype(np.float32))
    assert np.isnan(bf16.to_float32(bf16.from_float32(np.array([np.nan], np.float32))))


def test_metadata_names_bf16_on_both_transports(server: ServerProcess) -> None:
    rest = httpclient.InferenceServerClient(server.host).get_model_metadata("double")
    assert [(t["name"], t["datatype"]) for t in rest["inputs"] + rest["outputs"]] == [("x", "BF16"), ("y", "BF16")]
    over_grpc = grpcclient.InferenceServerClient(server.grpc_host).get_model_metadata("double", as_json=True)
    assert [(t["name"], t["datatype"]) for t in over_grpc["inputs"] + over_grpc["outputs"]] == [
        ("x", "BF16"), ("y", "BF16")]


def test_tritonclient_http_binary_and_grpc_raw_are_bit_exact(server: ServerProcess) -> None:
    x = VALUES.astype(ml_dtypes.bfloat16)
    given = httpclient.InferInput("x", list(x.shape), "BF16")
    given.set_data_from_numpy(x, binary_data=True)
    rest = httpclient.InferenceServerClient(server.host).infer(
        "double", [given], outputs=[httpclient.InferRequestedOutput("y", binary_data=True)]).as_numpy("y")
    over_grpc_input = grpcclient.InferInput("x", list(x.shape), "BF16")
    over_grpc_input.set_data_from_numpy(x)
    over_grpc = grpcclient.InferenceServerClient(server.grpc_host).infer("double", [over_grpc_input]).as_numpy("y")
    assert rest.dtype == over_grpc.dtype == ml_dtypes.bfloat16
    assert rest.tobytes() == over_grpc.tobytes() == doubled(VALUES).tobytes()


def test_json_numbers_round_in_and_widen_out(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "x", "shape": list(VALUES.shape), "datatype": "BF16",
                        "data": VALUES.ravel().tolist()}]}
    reply = post_json(server.port, "/v2/models/double/infer", body)
    assert reply.status == 200, reply.body
    (out,) = reply.json()["outputs"]
    assert out["datatype"] == "BF16" and out["shape"] == list(VALUES.shape)
    np.testing.assert_array_equal(np.array(out["data"], np.float32), doubled(VALUES).astype(np.float32).ravel())


def test_grpc_typed_contents_for_bf16_are_invalid_argument(server: ServerProcess) -> None:
    stub = Stub(server.grpc_host)
    request = infer_request("double", {"x": ("FP32", VALUES)}, raw=False)
    request.inputs[0].datatype = "BF16"
    code, message = stub.status("ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "BF16 has no typed contents field" in message, message
    stub.close()


def test_a_raw_size_that_is_not_two_bytes_each_is_invalid_argument(server: ServerProcess) -> None:
    stub = Stub(server.grpc_host)
    request = infer_request("double", {"x": ("UINT16", bf16.from_float32(VALUES))})
    request.inputs[0].datatype = "BF16"
    assert len(stub.call("ModelInfer", request).raw_output_contents[0]) == VALUES.size * 2
    request.raw_input_contents[0] = request.raw_input_contents[0][:-1]
    code, message = stub.status("ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "Invalid content size of tensor proto - Expected: 16 bytes; Actual: 15 bytes; input name: x"
    stub.close()
