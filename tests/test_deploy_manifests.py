"""deploy/ manifests, validated against schemas (offline), and checked against each other and the CLI.

- Kubernetes kinds: kubernetes-validate's bundled OpenAPI schemas, strict (unknown fields are
  errors, as `kubectl apply --validate=strict`), for the oldest and newest Kubernetes it knows
  among those we claim (1.28 on).
- KServe kinds: the CRDs' own openAPIV3Schema (tests/data/kserve, extracted from KServe's
  released CRD YAML), made strict the same way; metadata against Kubernetes' ObjectMeta.
- Cross-checks a schema cannot make: every container's args parse with fastserve's own CLI,
  ports/probes/selectors/names line up, the user matches the Dockerfile's.
"""

from __future__ import annotations

import copy
import functools
import gzip
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

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KSERVE_SCHEMAS = Path(__file__).resolve().parent / "data" / "kserve"
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


def strict(schema: Any) -> Any:
    """Unknown fields become errors wherever the schema lists its properties (what strict field
    validation does on the API server); objects marked preserve-unknown-fields stay open."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str, version: str) -> jsonschema.Validator:
    path = KSERVE_SCHEMAS / f"{kind.lower()}.{version}.schema.json.gz"
    schema = strict(json.loads(gzip.decompress(path.read_bytes())))
    return jsonschema.Draft7Validator(schema)


@functools.cache
def object_meta_validator() -> jsonschema.Validator:
    version = kubernetes_versions()[-1]
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text())
    schema = {"$defs": definitions["$defs"], "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(schema)


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    group, _, version = doc["apiVersion"].partition("/")
    assert group == "serving.kserve.io", doc["apiVersion"]
    validator = crd_validator(doc["kind"], version)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    errors += [f"metadata/{'/'.join(map(str, e.path))}: {e.message}"
               for e in object_meta_validator().iter_errors(doc["metadata"])]
    return errors


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
    deployment = copy.deepcopy(the("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_versions()[-1], strict=True)
    hpa = copy.deepcopy(the("HorizontalPodAutoscaler"))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, kubernetes_versions()[-1], strict=True)


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
