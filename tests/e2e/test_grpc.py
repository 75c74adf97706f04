"""The KServe v2 gRPC API end to end: tritonclient.grpc (sync and aio) and raw stubs on the zoo server.

Every RPC, every datatype over raw and typed contents, BYTES, versions, the outputs filter and
the request id; and REST parity: the same inputs give byte-identical outputs over REST
(binary) and gRPC.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient

from tests.e2e.test_binary import values
from tests.grpcstub import Stub, infer_request, output_arrays
from tests.modelzoo import DATATYPES
from tests.serverproc import ServerProcess


@pytest.fixture(scope="session")
def server(grpc_server: ServerProcess) -> ServerProcess:
    """The zoo's server on each gRPC transport in turn (tests/conftest.py: grpc_transport)."""
    return grpc_server

@pytest.fixture(scope="module")
def client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_host)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Stub:
    return Stub(server.grpc_host)


def test_health_and_metadata_rpcs(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("add") and client.is_model_ready("versioned", "2")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] and metadata["version"]
    # OVMS lists none; Triton's names of the two extensions fastserve's gRPC serves (perf_analyzer reads them)
    assert metadata["extensions"] == ["model_configuration", "statistics"]
    model = client.get_model_metadata("versioned", as_json=True)
    assert model["name"] == "versioned" and model["versions"] == ["1", "2", "3"] and model["platform"] == "OpenVINO"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert model["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["-1", "4"]}]


def test_metadata_matches_rest_for_every_zoo_model(server: ServerProcess, client: grpcclient.InferenceServerClient
                                                   ) -> None:
    rest = httpclient.InferenceServerClient(server.host)
    for name in ["add", "dynamic", "ranged", "string", "failing", *[f"identity_{d.lower()}" for d in DATATYPES]]:
        expected = rest.get_model_metadata(name)
        got = client.get_model_metadata(name, as_json=True)
        for tensors in ("inputs", "outputs"):
            for tensor in got[tensors]:
                tensor["shape"] = [int(d) for d in tensor["shape"]]
        assert got == expected, name


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_raw_with_tritonclient(client: grpcclient.InferenceServerClient, datatype: str) -> None:
    x = values(datatype, (3, 5))
    given = grpcclient.InferInput("in", list(x.shape), datatype)
    given.set_data_from_numpy(x)
    result = client.infer(f"identity_{datatype.lower()}", [given])
    out = result.as_numpy("out")
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "FP16"])
def test_every_datatype_typed_contents(stub: Stub, datatype: str) -> None:
    x = values(datatype, (2, 4))
    response = stub.call("ModelInfer", infer_request(f"identity_{datatype.lower()}", {"in": (datatype, x)}, raw=False))
    out = output_arrays(response)["out"]
    assert response.raw_output_contents and not response.outputs[0].HasField("contents")  # raw, as OVMS
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_rest_and_grpc_give_byte_identical_outputs(server: ServerProcess, stub: Stub, datatype: str) -> None:
    x = values(datatype, (4, 3))
    model = f"identity_{datatype.lower()}"
    rest = httpclient.InferenceServerClient(server.host)
    given = httpclient.InferInput("in", list(x.shape), datatype)
    given.set_data_from_numpy(x, binary_data=True)
    over_rest = rest.infer(model, [given], outputs=[httpclient.InferRequestedOutput("out", binary_data=True)])
    response = stub.call("ModelInfer", infer_request(model, {"in": (datatype, x)}))
    assert response.raw_output_contents[0] == over_rest.as_numpy("out").tobytes()
    assert list(response.outputs[0].shape) == over_rest.get_output("out")["shape"]
    assert response.outputs[0].datatype == over_rest.get_output("out")["datatype"]


def test_bytes_raw_and_typed_both_ways(client: grpcclient.InferenceServerClient, stub: Stub) -> None:
    text = np.array([b"hello", b"", "żółw".encode(), b"\x00\xff"], dtype=object)
    given = grpcclient.InferInput("text", [4], "BYTES")
    given.set_data_from_numpy(text)
    result = client.infer("string", [given])
    assert result.as_numpy("echo").tolist() == text.tolist()
    assert result.as_numpy("length").tolist() == [5, 0, 7, 2]
    typed = output_arrays(stub.call("ModelInfer", infer_request("string", {"text": ("BYTES", text)}, raw=False)))
    assert typed["echo"].tolist() == text.tolist() and typed["length"].tolist() == [5, 0, 7, 2]


def test_versions_default_to_the_latest_and_can_be_named(client: grpcclient.InferenceServerClient) -> None:
    x = np.zeros((1, 4), np.float32)
    given = grpcclient.InferInput("x", [1, 4], "FP32")
    given.set_data_from_numpy(x)
    assert client.infer("versioned", [given]).as_numpy("y").tolist() == [[3.0] * 4]
    for version in ("1", "2", "3"):
        result = client.infer("versioned", [given], model_version=version)
        assert result.as_numpy("y").tolist() == [[float(version)] * 4]
        assert result.get_response().model_version == version


def test_outputs_filter_and_request_id(stub: Stub) -> None:
    a, b = np.arange(10, dtype=np.float32).reshape(1, 10), np.ones((1, 10), np.float32)
    request = infer_request("add", {"a": ("FP32", a), "b": ("FP32", b)}, outputs=["diff"], request_id="req-7")
    response = stub.call("ModelInfer", request)
    assert [o.name for o in response.outputs] == ["diff"] and response.id == "req-7"
    assert response.model_name == "add" and response.model_version == "1"
    np.testing.assert_array_equal(output_arrays(response)["diff"], a - b)
    everything = stub.call("ModelInfer", infer_request("add", {"a": ("FP32", a), "b": ("FP32", b)}))
    assert [o.name for o in everything.outputs] == ["diff", "sum"] and everything.id == ""  # REST's order


def test_asyncio_client_with_many_calls_in_flight(server: ServerProcess) -> None:
    async def run() -> list[np.ndarray]:
        async with grpcaio.InferenceServerClient(server.grpc_host) as client:
            async def one(i: int) -> np.ndarray:
                x = np.full((1 + i % 3, 4), i, np.float32)
                given = grpcaio.InferInput("x", list(x.shape), "FP32")
                given.set_data_from_numpy(x)
                return (await client.infer("dynamic", [given])).as_numpy("y") - 2 * x
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 60)

    for difference in asyncio.run(run()):
        assert not difference.any()
