"""The standard services beside the inference one: grpc.health.v1.Health and server reflection."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.serverproc import ServerProcess


@pytest.fixture(scope="session")
def server(grpc_server: ServerProcess) -> ServerProcess:
    """The zoo's server on each gRPC transport in turn (tests/conftest.py: grpc_transport)."""
    return grpc_server

@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> grpc.Channel:
    return grpc.insecure_channel(server.grpc_host)


@pytest.mark.parametrize("service", ["", "inference.GRPCInferenceService", "add", "versioned"])
def test_health_is_serving_for_the_server_and_each_model(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_name_is_not_found(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    watch.cancel()


def test_health_watch_sends_the_current_status_first(channel: grpc.Channel) -> None:
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="add"), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_reflection_lists_and_describes_every_service(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    pool = DescriptorPool(database)
    service = pool.FindServiceByName("inference.GRPCInferenceService")
    assert [m.name for m in service.methods] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                                 "ModelMetadata", "ModelInfer", "ModelConfig", "ModelStatistics"]
    infer = pool.FindMessageTypeByName("inference.ModelInferRequest")
    assert infer.fields_by_name["raw_input_contents"].number == 7
    assert pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]
