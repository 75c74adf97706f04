"""Hand-written JSON schemas (Draft 2020-12) for the KServe kinds in deploy/kserve/.

Rules:
- These are NOT KServe's CRD schemas: they are subsets of the KServe API, written for this project
  from the documented fields of serving.kserve.io/v1alpha1 ServingRuntime and
  serving.kserve.io/v1beta1 InferenceService, covering the fields our manifests use plus a few
  common neighbours. Anything not listed here is refused (additionalProperties: false at every
  level described), so a typo or an unreviewed field fails the test instead of being ignored.
- Kubernetes types inside them (Container, ResourceRequirements, EnvVar, ObjectMeta) are not
  redescribed: they are `$ref`s into Kubernetes' own definitions, `#/$defs/io.k8s...`, which the
  caller supplies from kubernetes-validate's bundled `_definitions.json` (see `schema_for`).
- Adding a field to deploy/kserve/*.yaml means adding it here, deliberately.
"""

from __future__ import annotations

from typing import Any

DIALECT = "https://json-schema.org/draft/2020-12/schema"
K8S = "#/$defs/io.k8s."
CONTAINER = K8S + "api.core.v1.Container"
OBJECT_META = K8S + "apimachinery.pkg.apis.meta.v1.ObjectMeta"

STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}


def container_field(name: str) -> dict[str, Any]:
    """One field of Kubernetes' Container (KServe inlines the Container into the predictor's model)."""
    return {"$ref": f"{CONTAINER}/properties/{name}"}


def resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"], "$ref": OBJECT_META},
            "spec": spec,
        },
    }


# serving.kserve.io/v1alpha1 ServingRuntime

MODEL_FORMAT_SUPPORT: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string"},
        "autoSelect": {"type": "boolean"},
        "priority": {"type": "integer", "minimum": 1},  # only meaningful with autoSelect
    },
}

SERVING_RUNTIME_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["containers"],
    "additionalProperties": False,
    "properties": {
        "supportedModelFormats": {"type": "array", "items": MODEL_FORMAT_SUPPORT},
        "protocolVersions": {
            "type": "array",
            "uniqueItems": True,
            "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
        },
        "multiModel": {"type": "boolean"},
        "disabled": {"type": "boolean"},
        "annotations": STRING_MAP,  # copied onto the predictor pods
        "nodeSelector": STRING_MAP,
        "containers": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "$ref": CONTAINER},
        },
    },
}

SERVING_RUNTIME = resource("serving.kserve.io/v1alpha1", "ServingRuntime", SERVING_RUNTIME_SPEC)


# serving.kserve.io/v1beta1 InferenceService

MODEL: dict[str, Any] = {
    "type": "object",
    "required": ["modelFormat"],
    "additionalProperties": False,
    "properties": {
        "modelFormat": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "version": {"type": "string"}},
        },
        "runtime": {"type": "string", "minLength": 1},
        "storageUri": {"type": "string", "minLength": 1},
        "protocolVersion": {"enum": ["v1", "v2", "grpc-v2"]},
        # Container fields KServe merges into the runtime's kserve-container (args are appended).
        "image": container_field("image"),
        "command": container_field("command"),
        "args": container_field("args"),
        "env": container_field("env"),
        "resources": container_field("resources"),
    },
}

PREDICTOR: dict[str, Any] = {
    "type": "object",
    "required": ["model"],
    "additionalProperties": False,
    "properties": {
        "model": MODEL,
        "minReplicas": COUNT,
        "maxReplicas": COUNT,  # 0 lets KServe pick the upper bound
        "scaleTarget": {"type": "integer", "minimum": 1},
        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
        "containerConcurrency": COUNT,
        "timeout": COUNT,  # seconds
        "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
        "serviceAccountName": {"type": "string"},
        "nodeSelector": STRING_MAP,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}

INFERENCE_SERVICE_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["predictor"],
    "additionalProperties": False,
    "properties": {"predictor": PREDICTOR},
}

INFERENCE_SERVICE = resource("serving.kserve.io/v1beta1", "InferenceService", INFERENCE_SERVICE_SPEC)


# By kind: each schema pins its apiVersion, so a wrong one is a validation error.
SCHEMAS: dict[str, dict[str, Any]] = {"ServingRuntime": SERVING_RUNTIME, "InferenceService": INFERENCE_SERVICE}


def schema_for(kind: str, kubernetes_defs: dict[str, Any]) -> dict[str, Any]:
    """The kind's schema as a root document whose $defs are Kubernetes' definitions (the
    `$defs` of kubernetes-validate's `_definitions.json`), so the `#/$defs/io.k8s...` refs resolve."""
    return {"$schema": DIALECT, "$defs": kubernetes_defs, **SCHEMAS[kind]}
