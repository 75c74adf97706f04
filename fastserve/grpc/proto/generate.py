"""Regenerates inference_pb2.py/.pyi from inference.proto with grpcio-tools' bundled protoc.

One change is made to protoc's output: the messages are built in a descriptor pool of their
own (POOL), not protobuf's default pool, because tritonclient and kserve register the same
`inference.*` names there from their own .proto files, and a process that imports two of them
fails ("duplicate symbol"). So fastserve's server, a test, or a user's program can import
fastserve beside either client. Reflection is given POOL (grpc/server.py).

The generated files are committed, so installing fastserve needs no protoc; the `proto` extra
pins the grpcio-tools that made them (its protobuf gencode version sets the runtime range in
pyproject). tests/unit/test_grpc_proto.py fails when the committed files are stale.
Usage: python -m fastserve.grpc.proto.generate [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "inference.proto"
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = ("# fastserve: a pool of its own, see fastserve/grpc/proto/generate.py\n"
                "POOL = _descriptor_pool.DescriptorPool()\n"
                "DESCRIPTOR = POOL.AddSerializedFile(")


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # the `proto` extra; never needed at run time

    args = ["protoc", f"-I{HERE}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", str(HERE / PROTO)]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {HERE / PROTO}")
    module = out_dir / PROTO.replace(".proto", "_pb2.py")
    text = module.read_text()
    if DEFAULT_POOL not in text:
        raise SystemExit(f"{module}: protoc's output has changed shape; update {__file__}")
    module.write_text(text.replace(DEFAULT_POOL, PRIVATE_POOL))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
