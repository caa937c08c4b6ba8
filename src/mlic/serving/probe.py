"""Is the model ready? One real prediction, not TorchServe's `/ping`.

`/ping` answers Healthy before the workers have loaded the model (and even when the handler
cannot import), so readiness here means: a small valid image, sent in KServe's v1 protocol, comes
back 200 with one prediction. The KServe runtime runs this as its readiness probe inside the pod:

    python -m mlic.serving.probe --url http://127.0.0.1:8080/v1/models/mlic:predict

Exit 0 when the model answered, 1 with the reason on stderr otherwise. It imports neither torch
nor the model (a probe runs every few seconds): numpy, Pillow and httpx only.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from mlic.serving.endpoint import inference_token

DEFAULT_URL = "http://127.0.0.1:8080/v1/models/mlic:predict"


def probe_image(size: int = 32) -> bytes:
    """A small valid PNG: proves an archive or a server answers a real prediction."""
    gradient = np.tile(np.linspace(0, 255, size).astype(np.uint8), (size, 1))
    pixels = np.stack([gradient, gradient.T, gradient[:, ::-1]], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def v1_request() -> dict[str, list[dict[str, str]]]:
    """The probe image as a KServe v1 request (`mlic.serving.predictor` reads `instances`)."""
    return {"instances": [{"image": base64.b64encode(probe_image()).decode("ascii")}]}


def problem(url: str, token: str | None = None, timeout_s: float = 10.0) -> str | None:
    """Why the model at `url` (a KServe v1 predict URL) is not ready, or None when it answered."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(url, json=v1_request(), headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"no answer from {url}: {exc!r}"
    if response.status_code != 200:
        return f"HTTP {response.status_code} from {url}: {response.text.strip()[:500]}"
    try:
        predictions = response.json()["predictions"]
    except (ValueError, KeyError, TypeError):
        return f"the answer from {url} has no 'predictions': {response.text.strip()[:500]}"
    if not (isinstance(predictions, list) and len(predictions) == 1 and "labels" in predictions[0]):
        return f"the answer from {url} is not one prediction with labels: {json.dumps(predictions)[:500]}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"KServe v1 predict URL (default {DEFAULT_URL})")
    parser.add_argument("--token-file", type=Path, help="TorchServe key file, when token auth is on")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    token = None
    if args.token_file is not None:
        token = inference_token(args.token_file)
    reason = problem(args.url, token, args.timeout)
    if reason is not None:
        print(f"not ready: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
