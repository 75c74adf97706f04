"""A served model version or DAG pipeline as Triton's ModelConfig (model_config.proto), as a dict.

Rules: pure: reads a Servable (its specs, pool, streams, batcher) and its ModelSettings, or a
pipeline's specs; never HTTP, protobuf or OpenVINO calls. Field names and enum texts are the
proto's; fields Triton always prints are printed with their defaults, so clients indexing them
(perf_analyzer reads `model_transaction_policy.decoupled`, `response_cache.enable`) find them.

max_batch_size (what perf_analyzer's -b rests on: with it > 0, dim 0 of every input and output
is the batch and `dims` leave it out):
- fastserve batches the version (a Batcher in front: `max_batch_size` in config.json, or unset where the
  load-time probe shows batches pay): that value, or the probed cap;
- OVMS's `batch_size: "auto"` made dim 0 dynamic on every input: the dim's upper bound when it
  has one, else Triton's own auto-complete default, DEFAULT_MAX_BATCH_SIZE (models/batching.py);
- otherwise 0, and `dims` are the whole shape (-1 for every non-static dim, ranges included),
  so a static model needs no --shape and a dynamic one takes --shape for its -1 dims.
Either way a batch above max_batch_size is still served (it runs alone), as before.
"""

from __future__ import annotations

from typing import Any

from fastserve.models.batcher import Batcher
from fastserve.models.batching import triton_max_batch_size
from fastserve.models.loader import plugin_config
from fastserve.models.servable import Servable
from fastserve.settings import ModelSettings, VersionPolicy
from fastserve.v2.types import TensorSpec

PLATFORM = BACKEND = "openvino"  # the name of Triton's OpenVINO backend
# KServe v2 datatype -> model_config.proto DataType. BYTES is TYPE_STRING there.
DATA_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING",
}  # fmt: skip


def data_type(spec: TensorSpec) -> str:
    if spec.datatype is not None:
        return DATA_TYPES[spec.datatype.name]
    return "TYPE_BF16" if spec.type_name.lower() == "bf16" else "TYPE_INVALID"


def dims(spec: TensorSpec, batched: bool) -> list[int]:
    shape = spec.metadata_shape  # -1 for every non-static dim; [-1] for a dynamic rank
    return shape[1:] if batched else shape


def model_config(servable: Servable, settings: ModelSettings) -> dict[str, Any]:
    """The ModelConfig of one served version."""
    batcher = getattr(servable.infer, "__self__", None)
    batcher = batcher if isinstance(batcher, Batcher) else None
    max_batch = triton_max_batch_size(servable, settings)
    doc = _common(servable.name, version_policy(settings.version_policy), max_batch,
                  servable.inputs, servable.outputs)
    if batcher is not None:
        doc["dynamic_batching"] = {
            # the batch the load-time probe found cheapest per row (docs/batching.md)
            "preferred_batch_size": [batcher.max_rows],
            "max_queue_delay_microseconds": round(batcher.delay * 1e6),
            "preserve_ordering": False,
            "priority_levels": 0,
            "default_priority_level": 0,
            "priority_queue_policy": {},
        }
    doc["instance_group"] = [{
        "name": servable.name,
        "kind": instance_kind(settings.target_device),
        # inferences OpenVINO runs at once (its streams); nireq requests can be in flight
        "count": servable.streams or servable.parallel,
        "gpus": [], "secondary_devices": [], "profile": [], "passive": False, "host_policy": "",
    }]  # fmt: skip
    parameters = {key: str(value) for key, value in plugin_config(settings).items()}
    parameters["NIREQ"] = str(servable.nireq)
    parameters["TARGET_DEVICE"] = settings.target_device
    if servable.batching:  # fastserve's batching choice and why (models/batching.py), as in the load log line
        parameters["BATCHING"] = servable.batching
    doc["parameters"] = {key: {"string_value": value} for key, value in sorted(parameters.items())}
    return doc


def pipeline_config(name: str, inputs: dict[str, TensorSpec], outputs: dict[str, TensorSpec]) -> dict[str, Any]:
    """A DAG pipeline: no batching of its own (its nodes may batch), one version, as OVMS serves it."""
    doc = _common(name, {"latest": {"num_versions": 1}}, 0, inputs, outputs)
    doc["instance_group"] = []
    doc["parameters"] = {"PIPELINE": {"string_value": "true"}}
    return doc


def version_policy(policy: VersionPolicy) -> dict[str, Any]:
    if policy.kind == "all":
        return {"all": {}}
    if policy.kind == "specific":
        return {"specific": {"versions": list(policy.versions)}}
    return {"latest": {"num_versions": policy.num_versions}}


def instance_kind(device: str) -> str:
    upper = device.upper()
    if upper == "CPU":
        return "KIND_CPU"
    if upper.startswith("GPU"):
        return "KIND_GPU"
    return "KIND_AUTO"  # AUTO, HETERO:..., NPU, MULTI: OpenVINO picks


def _common(name: str, policy: dict[str, Any], max_batch: int, inputs: dict[str, TensorSpec],
            outputs: dict[str, TensorSpec]) -> dict[str, Any]:
    batched = max_batch > 0
    ordered_in = sorted(inputs.values(), key=lambda s: s.index)
    ordered_out = sorted(outputs.values(), key=lambda s: s.index)
    return {
        "name": name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "runtime": "",
        "version_policy": policy,
        "max_batch_size": max_batch,
        "input": [{
            "name": s.name, "data_type": data_type(s), "format": "FORMAT_NONE", "dims": dims(s, batched),
            "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False,
            "is_non_linear_format_io": False,
        } for s in ordered_in],
        "output": [{
            "name": s.name, "data_type": data_type(s), "dims": dims(s, batched), "label_filename": "",
            "is_shape_tensor": False, "is_non_linear_format_io": False,
        } for s in ordered_out],
        "batch_input": [],
        "batch_output": [],
        "default_model_filename": "",
        "cc_model_filenames": {},
        "metric_tags": {},
        "model_warmup": [],
        "model_transaction_policy": {"decoupled": False},
        "response_cache": {"enable": False},
    }  # fmt: skip
