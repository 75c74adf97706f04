"""deploy/ manifests, validated against schemas (offline), and checked against each other and the CLI.

- Kubernetes kinds: kubernetes-validate's bundled OpenAPI schemas, strict (unknown fields are
  errors, as `kubectl apply --validate=strict`), for the oldest and newest Kubernetes it knows
  among those we claim (1.28 on).
- KServe kinds: tests/kserve_schemas.py, hand-written strict subsets of the ServingRuntime and
  InferenceService APIs (unknown fields are errors); the Kubernetes types inside them (Container,
  resources, env, metadata) against kubernetes-validate's definitions for the newest release.
- Cross-checks a schema cannot make: every container's args parse with fastserve's own CLI,
  ports/probes/selectors/names line up, the user matches the Dockerfile's.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from fastserve.cli import build_parser
from tests import kserve_schemas

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OLDEST_KUBERNETES = "1.28"


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load(path):
            found.append((f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


MANIFESTS = manifests()


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in MANIFESTS if doc["kind"] == kind]


def the(kind: str) -> dict[str, Any]:
    (doc,) = by_kind(kind)
    return doc


def kubernetes_versions() -> list[str]:
    known = [v for v in all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 28)]
    return sorted({known[0], known[-1]})


# Schemas


@functools.cache
def kubernetes_defs() -> dict[str, Any]:
    """Kubernetes' definitions (strict flavour) for the newest release kubernetes-validate knows."""
    version = kubernetes_versions()[-1]
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    return json.loads((folder / "_definitions.json").read_text())["$defs"]


@functools.cache
def kserve_validator(kind: str) -> jsonschema.Validator:
    schema = kserve_schemas.schema_for(kind, kubernetes_defs())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    validator = kserve_validator(doc["kind"])
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize(("where", "doc"), [m for m in MANIFESTS if "kserve.io" not in m[1]["apiVersion"]],
                         ids=[m[0] for m in MANIFESTS if "kserve.io" not in m[1]["apiVersion"]])
@pytest.mark.parametrize("version", kubernetes_versions())
def test_kubernetes_manifest_is_valid(where: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(("where", "doc"), [m for m in MANIFESTS if "kserve.io" in m[1]["apiVersion"]],
                         ids=[m[0] for m in MANIFESTS if "kserve.io" in m[1]["apiVersion"]])
def test_kserve_manifest_is_valid(where: str, doc: dict[str, Any]) -> None:
    assert kserve_errors(doc) == []


def test_the_validators_catch_mistakes() -> None:
    """A validator that accepts everything would make the two tests above pass for nothing."""
    isvc = copy.deepcopy(by_kind("InferenceService")[0])
    isvc["spec"]["predictor"]["model"]["protocolVersions"] = "v2"  # a typo of protocolVersion
    assert any("protocolVersions" in e for e in kserve_errors(isvc))
    runtime = copy.deepcopy(the("ServingRuntime"))
    del runtime["spec"]["containers"]
    assert any("containers" in e for e in kserve_errors(runtime))
    runtime = copy.deepcopy(the("ServingRuntime"))
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"  # must be an integer
    assert kserve_errors(runtime)
    runtime["metadata"]["labelz"] = {}
    assert any("labelz" in e for e in kserve_errors(runtime))
    # Each level the hand-written schemas describe refuses unknown fields and bad values.
    mistakes: list[tuple[str, str, Any]] = [
        ("ServingRuntime", "spec/multiModels", True),
        ("ServingRuntime", "spec/supportedModelFormats/0/autoselect", True),
        ("ServingRuntime", "spec/protocolVersions/0", "v3"),
        ("ServingRuntime", "spec/containers/0/imagePullPolicyy", "Always"),
        ("InferenceService", "spec/predictor/minReplicas", "1"),
        ("InferenceService", "spec/predictor/scaleMetric", "gpu"),
        ("InferenceService", "spec/predictor/model/protocolVersion", "v3"),
        ("InferenceService", "spec/predictor/model/modelFormat/nam", "onnx"),
        ("InferenceService", "spec/predictor/model/resources/limitz", {}),
        ("InferenceService", "spec/transformers", {}),
        ("InferenceService", "apiVersion", "serving.kserve.io/v1alpha1"),
    ]
    for kind, where, value in mistakes:
        doc = copy.deepcopy(by_kind(kind)[0])
        *parents, leaf = where.split("/")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(leaf) if isinstance(node, list) else leaf] = value
        errors = kserve_errors(doc)
        assert errors, f"{kind} {where}={value!r} was accepted"
        assert all(e.startswith("/".join(parents)) for e in errors), errors  # refused for this field
    isvc = copy.deepcopy(by_kind("InferenceService")[0])
    del isvc["spec"]["predictor"]["model"]["modelFormat"]["name"]
    assert any("'name' is a required property" in e for e in kserve_errors(isvc))
    deployment = copy.deepcopy(the("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_versions()[-1], strict=True)
    hpa = copy.deepcopy(the("HorizontalPodAutoscaler"))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, kubernetes_versions()[-1], strict=True)


def test_kserve_schemas_refuse_unknown_fields_at_every_level() -> None:
    """Every object the hand-written schemas describe closes its field list."""
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    for kind, schema in kserve_schemas.SCHEMAS.items():
        walk(schema, kind)


# Cross-checks


def parse_fastserve_args(args: list[str]) -> Any:
    """The container args through fastserve's real parser (argparse exits on an unknown flag)."""
    return build_parser().parse_args([a.replace("{{.Name}}", "model") for a in args])


def test_deployment_runs_fastserve_as_documented() -> None:
    deployment = the("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = parse_fastserve_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(args.rest_port) == ports["http"] == 8000
    assert args.metrics_enable
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    # SIGTERM comes after preStop; fastserve then drains for up to --shutdown_timeout seconds.
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > sleep + args.shutdown_timeout
    assert args.config_path.startswith(container["volumeMounts"][0]["mountPath"] + "/")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {the("PersistentVolumeClaim")["metadata"]["name"]}
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]  # the HPA's utilisation base


def test_service_hpa_and_pdb_point_at_the_deployment() -> None:
    deployment, service = the("Deployment"), the("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    target = the("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert target["apiVersion"] == deployment["apiVersion"]


def test_kustomization_lists_every_plain_manifest() -> None:
    (kustomization,) = load(DEPLOY / "kubernetes" / "kustomization.yaml")
    on_disk = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_serving_runtime_and_inference_services_fit_together() -> None:
    runtime = the("ServingRuntime")
    spec = runtime["spec"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges predictor settings into
    args = parse_fastserve_args(container["args"])
    assert args.model_path == "/mnt/models"  # where KServe's storage initializer puts the model
    assert args.model_name == "model" and "{{.Name}}" in " ".join(container["args"])
    assert int(args.rest_port) == container["ports"][0]["containerPort"] == 8080  # KServe's default port
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert spec["annotations"]["prometheus.kserve.io/port"] == "8080" and args.metrics_enable
    assert spec["protocolVersions"] == ["v2"]
    assert container["securityContext"]["runAsUser"] == dockerfile_uid()
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert formats == {"openvino", "onnx"}
    services = by_kind("InferenceService")
    assert {s["spec"]["predictor"]["model"]["modelFormat"]["name"] for s in services} == formats
    for isvc in services:
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["protocolVersion"] == "v2"
        assert re.match(r"^(pvc|s3|gs|https?)://", model["storageUri"])
        # Extra args are appended to the runtime's: together they must still parse.
        parse_fastserve_args(container["args"] + model.get("args", []))


def dockerfile_uid() -> int:
    users = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    return int(users[-1].split(":")[0])


def test_docs_name_the_manifests() -> None:
    """docs/operations.md tells how to apply each file; a renamed file must not leave it stale."""
    text = (ROOT / "docs" / "operations.md").read_text()
    for path in DEPLOY.rglob("*.yaml"):
        assert path.relative_to(ROOT).as_posix() in text or path.parent.relative_to(ROOT).as_posix() in text
    assert shlex.split("kubectl apply -k deploy/kubernetes") and "kubectl apply -k deploy/kubernetes" in text
