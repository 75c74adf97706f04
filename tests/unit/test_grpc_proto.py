"""The committed .proto and generated code: current, and field for field tritonclient's messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastserve.grpc.proto import generate

MESSAGES = ["ServerLiveRequest", "ServerLiveResponse", "ServerReadyRequest", "ServerReadyResponse",
            "ModelReadyRequest", "ModelReadyResponse", "ServerMetadataRequest", "ServerMetadataResponse",
            "ModelMetadataRequest", "ModelMetadataResponse", "InferParameter", "InferTensorContents",
            "ModelInferRequest", "ModelInferResponse"]
# Run in a child: this prints one module's descriptors without importing the other's (both are
# package `inference`), which also proves fastserve's own pool keeps them apart.
DUMP = """
import json, sys, importlib
module = importlib.import_module(sys.argv[1])
def fields(d):
    out = {f.name: [f.number, f.type, f.is_repeated, f.containing_oneof.name if f.containing_oneof else None]
           for f in d.fields}
    for n in d.nested_types:
        out[n.name] = fields(n)
    return out
print(json.dumps({name: fields(module.DESCRIPTOR.message_types_by_name[name]) for name in sys.argv[2:]}))
"""


def dump(module: str) -> dict:
    done = subprocess.run([sys.executable, "-c", DUMP, module, *MESSAGES], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_field_matches_tritonclients_grpc_service_proto() -> None:
    assert dump("fastserve.grpc.proto.inference_pb2") == dump("tritonclient.grpc.service_pb2")


def test_the_committed_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    generate.generate(tmp_path)
    for name in ("inference_pb2.py", "inference_pb2.pyi"):
        assert (tmp_path / name).read_text() == (generate.HERE / name).read_text(), name


def test_fastserve_and_tritonclient_messages_load_in_one_process() -> None:
    import tritonclient.grpc.service_pb2 as triton

    from fastserve.grpc.proto import inference_pb2 as ours

    request = ours.ModelInferRequest(model_name="m", id="1")
    request.inputs.add(name="a", datatype="FP32", shape=[1, 2])
    request.raw_input_contents.append(b"\0" * 8)
    parsed = triton.ModelInferRequest.FromString(request.SerializeToString())
    assert parsed.model_name == "m" and list(parsed.inputs[0].shape) == [1, 2]
