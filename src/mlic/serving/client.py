"""Query a TorchServe endpoint: `mlic predict IMAGE...` and the readiness probe of `mlic serve`.

Images go as raw bytes with `Content-Type: application/octet-stream` (TorchServe answers a
form-encoded body with a 500 before our handler runs). The token comes from the key file of the
server `mlic serve` started, or from the environment variable MLIC_TOKEN for any other server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mlic.errors import DataError, ServingError
from mlic.paths import Paths
from mlic.serving.predictor import ALL_SCORES_HEADER

TOKEN_ENV = "MLIC_TOKEN"
#: TorchServe answers a missing, wrong or expired token with 400 and this type (not 401).
INVALID_KEY_TYPE = "InvalidKeyException"
TIMEOUT = httpx.Timeout(130.0, connect=5.0)  # TorchServe kills a request after 120 s itself


def read_key_file(key_file: Path) -> dict[str, Any]:
    """TorchServe's key_file.json: {"management"|"inference": {"key", "expiration time"}, "API": {"key"}}."""
    try:
        return json.loads(key_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServingError(
            "TorchServe key file not found", file=key_file, fix="start the server with `mlic serve`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ServingError(f"key file is not JSON ({exc})", file=key_file, fix="restart with `mlic serve`") from exc


def token_expired(key_file: Path, kind: str = "inference") -> bool:
    """TorchServe keys expire (60 min by default); the key file says when."""
    expires = read_key_file(key_file)[kind]["expiration time"]
    return datetime.fromisoformat(expires.replace("Z", "+00:00")) <= datetime.now(UTC)


def inference_token(key_file: Path) -> str:
    return str(read_key_file(key_file)["inference"]["key"])


def post_image(
    http: httpx.Client, url: str, image: bytes, token: str | None, all_scores: bool = False
) -> httpx.Response:
    """One prediction request, raw bytes; connection problems become a ServingError naming the URL."""
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if all_scores:
        headers[ALL_SCORES_HEADER] = "true"
    try:
        return http.post(url, content=image, headers=headers)
    except httpx.ConnectError as exc:
        raise ServingError(
            f"cannot connect to {url} ({exc})",
            fix="start the server with `mlic serve` (or check --url)",
        ) from exc
    except httpx.TimeoutException as exc:
        raise ServingError(f"no answer from {url} in time ({exc})", fix="check the TorchServe logs") from exc


def error_body(response: httpx.Response) -> dict[str, Any]:
    """TorchServe's and our handler's error JSON ({"code", "type", "message"}), or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text.strip() or response.reason_phrase}
    return body if isinstance(body, dict) else {"message": str(body)}


def is_token_rejection(response: httpx.Response) -> bool:
    return response.status_code == 400 and error_body(response).get("type") == INVALID_KEY_TYPE


def _raise_for_answer(response: httpx.Response, image: Path, token_source: str) -> None:
    """Turn a non-200 answer into a ServingError that names the image and what to do."""
    body = error_body(response)
    message = body.get("message", "")
    if is_token_rejection(response):
        raise ServingError(
            f"the server rejected the inference token ({message})",
            field="Authorization",
            fix=f"the token came from {token_source}; for a local server restart it with `mlic serve`, "
            f"for another one export {TOKEN_ENV}=<its inference key>",
        )
    if response.status_code == httpx.codes.REQUEST_ENTITY_TOO_LARGE:
        raise ServingError(
            "the image is larger than the server accepts",
            file=image,
            fix="shrink it, or raise package.max_request_size",
        )
    if 400 <= response.status_code < 500:
        raise ServingError(
            f"HTTP {response.status_code}: {message}", file=image, fix=body.get("fix") or "send a valid image file"
        )
    raise ServingError(
        f"server error HTTP {response.status_code}: {message}",
        file=image,
        fix="see the TorchServe logs (`mlic serve` prints where they are)",
    )


def _read_image(image: Path) -> bytes:
    try:
        return image.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the image ({exc.strerror})", file=image, fix="check the path") from exc


def predict_files(
    paths: Paths, images: Iterable[Path], url: str | None = None, all_scores: bool = False
) -> Iterator[dict[str, Any]]:
    """Send each image to the endpoint and yield its parsed answer (lazily, so answers print as they come).

    Without `url` the server is the one `mlic serve` started under `paths`; its inference token
    is renewed through TorchServe's token API when it has expired.
    """
    from mlic.serving import server  # here: server imports this module for its readiness probe

    if url is None:
        endpoint = server.running_endpoint(paths)
        url = endpoint.prediction_url
        token_source = str(endpoint.key_file)
    else:
        endpoint = None
        token_source = f"${TOKEN_ENV}" if TOKEN_ENV in os.environ else f"nowhere (${TOKEN_ENV} is not set)"
    with httpx.Client(timeout=TIMEOUT) as http:
        for image in images:
            data = _read_image(image)
            token = endpoint.fresh_inference_token(http) if endpoint else os.environ.get(TOKEN_ENV)
            response = post_image(http, url, data, token, all_scores=all_scores)
            if response.status_code != 200:
                _raise_for_answer(response, image, token_source)
            yield response.json()


def format_answer(image: Path | str, answer: dict[str, Any]) -> str:
    """`photo.jpg: boat 0.93, sea 0.81` (plus `| all: ...` when every score was asked for)."""
    labels = ", ".join(f"{item['label']} {item['score']:.2f}" for item in answer["labels"])
    line = f"{image}: {labels or 'no label above its threshold'}"
    if "scores" in answer:
        ranked = sorted(answer["scores"].items(), key=lambda pair: -pair[1])
        line += " | all: " + ", ".join(f"{label} {score:.2f}" for label, score in ranked)
    return line
