"""Kubernetes manifests checked offline against a CRD's schema, as strictly as the API server
checks them with `kubectl apply --validate=strict`. The CRDs live in tests/data/crds/ (README
there says where each comes from)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parent / "data" / "crds"


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON Schema that refuses undeclared fields, as the API server
    does in strict mode (unless `x-kubernetes-preserve-unknown-fields` says otherwise)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    checked = {key: strict(value) for key, value in schema.items()}
    declared = "properties" in checked and "additionalProperties" not in checked
    if declared and not checked.get("x-kubernetes-preserve-unknown-fields"):
        checked["additionalProperties"] = False
    return checked


@functools.cache
def validator(crd_file: str, version: str) -> jsonschema.Validator:
    """The strict validator of one served version of the CRD at tests/data/crds/`crd_file`."""
    crd = yaml.load((CRDS / crd_file).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)  # MBs: libyaml
    (served,) = [entry for entry in crd["spec"]["versions"] if entry["name"] == version]
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def errors(crd_file: str, manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of `manifest` ("path: message"); [] when the API server would accept it."""
    version = manifest["apiVersion"].split("/")[1]
    found = validator(crd_file, version).iter_errors(manifest)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in found]
