"""Send a compiled pipeline to a Kubeflow Pipelines API as a run in an experiment (kfp.Client).

Where and as whom (kfp's conventions, docs/operations.md):
- host: `--host`, else `KF_PIPELINES_ENDPOINT`; with neither, kfp finds the API itself — the
  in-cluster service from a pod, else the current kubeconfig context through the Kubernetes API
  server's service proxy.
- token (sent as `Authorization: Bearer`): `KF_PIPELINES_TOKEN`, else the file named by
  `KF_PIPELINES_SA_TOKEN_PATH` (kfp's service-account token volume, whose default path
  /var/run/secrets/kubeflow/pipelines/token is used when it exists); else none.

Before kfp.Client is built we ask the API's healthz ourselves, with a short timeout: kfp.Client
retries a failing healthz five times, five seconds apart, then raises a bare TimeoutError. The KFP
UI's healthz (what a port-forward or the Kubeflow gateway answers with) names the backend's release
(`apiServerTagName`, else `frontendTagName`: they ship together); one older than the pipeline
needs is refused before anything is sent. The API server's own healthz names no release: then the
check is skipped with a note.
"""

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mlic.errors import PipelineError
from mlic.kubeflow.settings import MIN_BACKEND_VERSION

log = logging.getLogger(__name__)

HOST_ENV = "KF_PIPELINES_ENDPOINT"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_TOKEN_PATH = Path("/var/run/secrets/kubeflow/pipelines/token")
HEALTHZ_PATH = "/apis/v2beta1/healthz"
HEALTHZ_TIMEOUT_S = 10.0
CREDENTIALS_FIX = (
    f"set {TOKEN_ENV} to a valid token (or {TOKEN_PATH_ENV} to a token file); "
    "for a port-forwarded, auth-less KFP leave both unset"
)


@dataclass(frozen=True)
class Submission:
    run_id: str
    run_url: str
    experiment: str

    def summary(self) -> str:
        return f"submitted run {self.run_id} to experiment '{self.experiment}': {self.run_url}"


def find_token() -> str | None:
    """The bearer token by kfp's conventions (module docstring), None when there is none."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    token_path = Path(os.environ.get(TOKEN_PATH_ENV) or DEFAULT_TOKEN_PATH)
    if token_path.is_file():
        return token_path.read_text(encoding="utf-8").strip()
    if os.environ.get(TOKEN_PATH_ENV):
        raise PipelineError("token file not found", file=token_path, field=TOKEN_PATH_ENV, fix=CREDENTIALS_FIX)
    return None


def _http_error(status: int, detail: str, host: str) -> PipelineError:
    if status in (401, 403):
        return PipelineError(f"the KFP API at {host} refused the credentials (HTTP {status})", fix=CREDENTIALS_FIX)
    return PipelineError(
        f"the KFP API at {host} answered HTTP {status}: {detail.strip()[:300]}",
        fix="check the KFP deployment (`kubectl -n kubeflow get pods`) and the API server log",
    )


def _unreachable(host: str, exc: Exception) -> PipelineError:
    return PipelineError(
        f"cannot reach the KFP API at {host} ({exc.__class__.__name__}: {exc})",
        field="--host",
        fix="check the URL; from a workstation: `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80` "
        "and --host http://localhost:8080",
    )


def backend_version(healthz: dict[str, Any]) -> tuple[int, int, int] | None:
    """The KFP release a healthz answer names ("2.14.3", "v2.15.0-rc.1"), None when it names none."""
    for key in ("apiServerTagName", "frontendTagName"):
        match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", str(healthz.get(key) or ""))
        if match:
            major, minor, patch = (int(part) for part in match.groups())
            return major, minor, patch
    return None


def check_backend_version(healthz: dict[str, Any], host: str) -> None:
    """Refuse a backend older than MIN_BACKEND_VERSION: it would reject the run's collected models."""
    version = backend_version(healthz)
    needed = ".".join(map(str, MIN_BACKEND_VERSION))
    if version is None:
        log.info("the KFP API at %s names no release: cannot check it is >= %s", host, needed)
        return
    if version < MIN_BACKEND_VERSION:
        found = ".".join(map(str, version))
        raise PipelineError(
            f"the KFP backend at {host} is {found}; the pipeline needs >= {needed} "
            "(it hands the trained models to evaluate with dsl.Collected of artifacts, which older backends reject)",
            field="--host",
            fix=f"upgrade Kubeflow Pipelines to {needed} or later",
        )


def check_health(host: str, token: str | None) -> None:
    """One quick healthz call: unreachable host, bad credentials, a failing API or too old a backend
    fail fast and clearly."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(host.rstrip("/") + HEALTHZ_PATH, headers=headers, timeout=HEALTHZ_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise _unreachable(host, exc) from None
    if response.status_code >= 400:
        raise _http_error(response.status_code, response.text, host)
    try:
        healthz = response.json()
    except ValueError:
        healthz = {}
    check_backend_version(healthz if isinstance(healthz, dict) else {}, host)


def submit(
    package: Path,
    arguments: dict[str, Any],
    *,
    host: str | None,
    experiment: str,
    run_name: str | None,
    namespace: str | None = None,
) -> Submission:
    """Create a run of the compiled `package` with `arguments` in `experiment` (created if missing).

    Caching is what the package was compiled with: kfp.Client's `enable_caching` override reaches
    only top-level tasks, not those inside the training loop or the gate.
    """
    import kfp
    import kfp_server_api
    import urllib3

    host = host or os.environ.get(HOST_ENV) or None
    token = find_token()
    where = host or "found by kfp (in-cluster service or kubeconfig)"
    log.info("KFP API: %s, %s", where, "with a bearer token" if token else "without a token")
    if host:
        check_health(host, token)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
            client = kfp.Client(host=host, existing_token=token, namespace=namespace or "kubeflow")
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
        )
    except kfp_server_api.ApiException as exc:
        raise _http_error(exc.status, str(exc.body or exc.reason), host or "kubeconfig") from None
    except (urllib3.exceptions.HTTPError, TimeoutError) as exc:
        raise _unreachable(host or "the kubeconfig's cluster", exc) from None
    run_url = f"{(host or '').rstrip('/')}/#/runs/details/{result.run_id}"
    return Submission(run_id=result.run_id, run_url=run_url, experiment=experiment)
