"""The Triton-extension messages of inference.proto: each field fastserve declares has Triton's
published number, type, label and oneof, as tritonclient's copies of grpc_service.proto and
model_config.proto have them (fastserve declares a subset of ModelConfig: what it fills)."""

from __future__ import annotations

from typing import Any

import pytest
import tritonclient.grpc.model_config_pb2 as triton_config
import tritonclient.grpc.service_pb2 as triton_service

from fastserve.grpc.proto import inference_pb2 as ours

SERVICE_MESSAGES = ["ModelConfigRequest", "ModelConfigResponse", "ModelStatisticsRequest", "StatisticDuration",
                    "InferStatistics", "InferResponseStatistics", "InferBatchStatistics", "MemoryUsage",
                    "ModelStatistics", "ModelStatisticsResponse"]
CONFIG_MESSAGES = ["ModelConfig", "ModelInput", "ModelOutput", "ModelInstanceGroup", "ModelVersionPolicy",
                   "ModelDynamicBatching", "ModelParameter", "ModelTransactionPolicy", "ModelResponseCache"]


def fields(descriptor: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in descriptor.fields:
        kind = f.message_type.name if f.message_type else f.enum_type.name if f.enum_type else f.type
        out[f.name] = (f.number, kind, f.is_repeated, f.containing_oneof.name if f.containing_oneof else None)
    for nested in descriptor.nested_types:
        out[nested.name] = fields(nested)
    for enum in descriptor.enum_types:
        out[enum.name] = {v.name: v.number for v in enum.values}
    return out


def subset(mine: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    for name, value in mine.items():
        assert name in theirs, f"{where}.{name} is not in Triton's message"
        if isinstance(value, dict) and not all(isinstance(v, int) for v in value.values()):
            subset(value, theirs[name], f"{where}.{name}")
        else:
            assert value == theirs[name], f"{where}.{name}: {value} != Triton's {theirs[name]}"


@pytest.mark.parametrize("name", SERVICE_MESSAGES)
def test_statistics_and_config_rpc_messages_match_grpc_service_proto(name: str) -> None:
    mine = fields(ours.DESCRIPTOR.message_types_by_name[name])
    assert mine == fields(triton_service.DESCRIPTOR.message_types_by_name[name])  # whole messages


@pytest.mark.parametrize("name", CONFIG_MESSAGES)
def test_model_config_fields_are_a_subset_of_model_config_proto(name: str) -> None:
    mine = fields(ours.DESCRIPTOR.message_types_by_name[name])
    subset(mine, fields(triton_config.DESCRIPTOR.message_types_by_name[name]), name)
    assert mine, name


def test_data_type_enum_is_tritons() -> None:
    mine = {v.name: v.number for v in ours.DESCRIPTOR.enum_types_by_name["DataType"].values}
    assert mine == {v.name: v.number for v in triton_config.DESCRIPTOR.enum_types_by_name["DataType"].values}


def test_the_service_declares_both_rpcs_as_triton_does() -> None:
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in ours.DESCRIPTOR.services_by_name[
        "GRPCInferenceService"].methods}
    theirs = {m.name: (m.input_type.name, m.output_type.name) for m in triton_service.DESCRIPTOR.services_by_name[
        "GRPCInferenceService"].methods}
    for rpc in ("ModelConfig", "ModelStatistics"):
        assert methods[rpc] == theirs[rpc]


def test_a_config_serialized_by_fastserve_parses_as_tritons() -> None:
    config = ours.ModelConfigResponse()
    config.config.name = "m"
    config.config.max_batch_size = 8
    config.config.input.add(name="x", data_type=ours.TYPE_FP32, dims=[-1, 3])
    config.config.dynamic_batching.max_queue_delay_microseconds = 100
    config.config.parameters["NIREQ"].string_value = "2"
    parsed = triton_service.ModelConfigResponse.FromString(config.SerializeToString())
    assert parsed.config.max_batch_size == 8 and list(parsed.config.input[0].dims) == [-1, 3]
    assert parsed.config.input[0].data_type == triton_config.TYPE_FP32
    assert parsed.config.dynamic_batching.max_queue_delay_microseconds == 100
    assert parsed.config.parameters["NIREQ"].string_value == "2"
