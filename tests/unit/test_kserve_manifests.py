"""deploy/kserve/ against KServe v0.20.0's CRD schemas (strict, like `kubectl apply
--validate=strict`), and the promises its comments make: the endpoint is not open to the world,
readiness is a real prediction, and the declared protocol is the one the handler speaks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import errors

from mlic.config import PackageConfig
from mlic.kubeflow.kserve import kserve_properties
from mlic.serving.probe import DEFAULT_URL

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kserve"
CRD_FILES = {
    "InferenceService": "kserve-v0.20.0/serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "kserve-v0.20.0/serving.kserve.io_servingruntimes.yaml",
}


def _manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8")) if doc]


def _errors(manifest: dict[str, Any]) -> list[str]:
    return errors(CRD_FILES[manifest["kind"]], manifest)


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "servingruntime.yaml"])
def test_kserve_manifests_match_the_crd_schemas(name: str) -> None:
    (manifest,) = _manifests(name)
    assert manifest["apiVersion"].startswith("serving.kserve.io/")
    assert _errors(manifest) == []


def test_validation_refuses_a_field_the_schema_does_not_declare() -> None:
    """The check has teeth: a misspelt field fails, as it would on the cluster."""
    (manifest,) = _manifests("inferenceservice.yaml")
    wrong = copy.deepcopy(manifest)
    wrong["spec"]["predictor"]["model"]["protocolVersions"] = ["v1"]  # the runtime's field, not the model's
    assert any("protocolVersions" in error for error in _errors(wrong))


def test_the_runtime_serves_the_protocol_the_service_asks_for() -> None:
    (service,) = _manifests("inferenceservice.yaml")
    (runtime,) = _manifests("servingruntime.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v1"]
    formats = {entry["name"] for entry in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats


def test_readiness_is_a_prediction_of_the_packaged_model_on_loopback() -> None:
    (runtime,) = _manifests("servingruntime.yaml")
    (container,) = runtime["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:3] == ["python", "-m", "mlic.serving.probe"]
    url = command[command.index("--url") + 1]
    package = PackageConfig()
    properties = kserve_properties(package)
    assert url == DEFAULT_URL == f"{properties['inference_address']}/v1/models/{package.model_name}:predict"
    assert container["readinessProbe"]["timeoutSeconds"] > 10  # the probe's own timeout answers first
    assert str(container["ports"][0]["containerPort"]) == properties["inference_address"].rsplit(":", 1)[1]
    assert (
        runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == properties["metrics_address"].rsplit(":", 1)[1]
    )


def test_torchserve_in_the_pod_listens_on_loopback_only() -> None:
    properties = kserve_properties(PackageConfig())
    for key in ("inference_address", "management_address", "metrics_address"):
        assert properties[key].startswith("http://127.0.0.1:"), key
    assert properties["grpc_inference_address"] == properties["grpc_management_address"] == "127.0.0.1"
    assert properties["enable_model_api"] == "false"


def test_the_endpoint_is_closed_to_everyone_the_policy_does_not_name() -> None:
    """Token auth is off in the pod, so the AuthorizationPolicy is what keeps the endpoint closed:
    it must select the predictor's pods, ALLOW only named sources, and never allow everyone."""
    (service,) = _manifests("inferenceservice.yaml")
    policy, account = _manifests("authorizationpolicy.yaml")
    assert (policy["apiVersion"], policy["kind"]) == ("security.istio.io/v1", "AuthorizationPolicy")
    assert policy["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": service["metadata"]["name"]
    }
    assert policy["spec"]["action"] == "ALLOW"
    rules = policy["spec"]["rules"]
    for rule in rules:  # a rule without sources, or with a wildcard source, would open it to all
        sources = [entry["source"] for entry in rule["from"]]
        assert sources and all(source.get("principals") or source.get("namespaces") for source in sources)
        assert all(
            "*" not in value
            for source in sources
            for value in [*source.get("principals", []), *source.get("namespaces", [])]
        )
    gateway, clients, autoscaler = rules
    assert gateway["when"] == [{"key": "request.headers[kubeflow-userid]", "values": ["*"]}]
    assert clients["from"][0]["source"]["principals"][0].endswith(f"/sa/{account['metadata']['name']}")
    assert autoscaler["to"] == [{"operation": {"ports": ["9088", "9090", "9091"]}}]  # qpext, autoscaler, user metrics
    annotations = service["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    assert annotations["autoscaling.knative.dev/target-burst-capacity"] == "0"
