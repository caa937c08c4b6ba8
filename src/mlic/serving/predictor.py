"""What the TorchServe handler does, minus TorchServe: parse a request, decode it, score, answer.

It lives in the package (not in serving/handler.py) because TorchServe insists that a handler
module defines exactly one class, and because `mlic package` runs the same code to prove an
archive works before it replaces the last good one.

Request formats (one image per request; TorchServe batches requests):

* raw image bytes, `Content-Type: application/octet-stream` (or `image/*`); add the header
  `X-All-Scores: true` for every label's score (TorchServe 0.12 passes request headers to the
  handler, but not query parameters);
* JSON, `Content-Type: application/json`: `{"image": "<base64 bytes>", "all_scores": true}`.

Answer: `{"labels": [{"label": name, "score": p}, ...]}` — the labels whose probability reaches
their per-class threshold, highest first — plus `"scores": {name: p, ...}` for every label when
asked. A request that cannot be served is answered with `{"code": 400, "type": "BadInput",
"message": ..., "fix": ...}` (the shape of TorchServe's own error bodies).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from mlic.data.images import decode_image
from mlic.data.transforms import to_model_input
from mlic.errors import DataError, ServingError
from mlic.io import read_json
from mlic.models.saved import load_model

#: Extra file in the archive (beside weights.pt and config.json): label names and thresholds.
SERVING_FILE = "serving.json"
BAD_INPUT_STATUS = 400
ALL_SCORES_FIELD = "all_scores"
ALL_SCORES_HEADER = "X-All-Scores"
_TRUE_WORDS = {"1", "true", "yes"}


@dataclass(frozen=True)
class ImageRequest:
    """One request's image bytes and whether the caller wants every label's score."""

    image: bytes
    all_scores: bool


def _flag(value: Any) -> bool:
    """A header value is a string ("true", "1", "yes"); JSON gives a real bool."""
    return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE_WORDS


def _image_from_json(body: dict[str, Any], name: str) -> ImageRequest:
    encoded = body.get("image")
    if not isinstance(encoded, str) or not encoded:
        raise DataError(
            "JSON request has no 'image' string", file=name, field="image", fix='send {"image": "<base64 bytes>"}'
        )
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(
            f"'image' is not valid base64 ({exc})", file=name, field="image", fix="base64-encode the file"
        ) from exc
    all_scores = body.get(ALL_SCORES_FIELD, False)
    if not isinstance(all_scores, bool):
        raise DataError(
            f"'{ALL_SCORES_FIELD}' must be true or false", file=name, field=ALL_SCORES_FIELD, fix="send a JSON boolean"
        )
    return ImageRequest(image=image, all_scores=all_scores)


def _header(headers: dict[str, Any], wanted: str) -> Any:
    """HTTP header names are case-insensitive; TorchServe keeps the client's spelling."""
    return next((value for key, value in headers.items() if key.lower() == wanted.lower()), False)


def parse_request(row: dict[str, Any], headers: dict[str, Any], name: str) -> ImageRequest:
    """One TorchServe input row (+ its request headers) → image bytes + options; DataError → 400.

    TorchServe hands a raw body over as `body` (multipart form fields by their name; `data` is
    the conventional one), JSON bodies already parsed and `text/*` bodies as str.
    """
    body = row.get("body", row.get("data"))
    if isinstance(body, dict):
        return _image_from_json(body, name)
    if isinstance(body, bytes | bytearray):
        return ImageRequest(image=bytes(body), all_scores=_flag(_header(headers, ALL_SCORES_HEADER)))
    if isinstance(body, str):
        raise DataError(
            "request body arrived as text",
            file=name,
            fix="send the image with Content-Type: application/octet-stream (or image/*)",
        )
    raise DataError("request has no image", file=name, fix="send the image bytes as the request body")


def probe_image(size: int = 32) -> bytes:
    """A small valid PNG: proves an archive or a server answers a real prediction."""
    gradient = torch.linspace(0, 255, size, dtype=torch.uint8).repeat(size, 1)
    pixels = torch.stack([gradient, gradient.T, gradient.flip(1)], dim=-1).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _serving_error(message: str, file: Path, field: str) -> ServingError:
    return ServingError(message, file=file, field=field, fix="re-run `mlic package` (after `mlic evaluate`)")


def valid_thresholds(values: Any, num_classes: int) -> bool:
    """One probability threshold in [0, 1] per class (checked by `package` and again at load)."""
    return (
        isinstance(values, list)
        and len(values) == num_classes
        and all(isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values)
    )


@dataclass(frozen=True)
class ServedModel:
    """A trained model plus what serving adds: label names, per-class thresholds, the pixel cap."""

    model: nn.Module
    label_names: list[str]
    thresholds: Tensor
    image_size: int
    max_image_pixels: int
    device: torch.device

    @classmethod
    def load(cls, model_dir: Path, device: torch.device | str = "cpu") -> ServedModel:
        """Rebuild from an unpacked archive (or any folder with weights.pt, config.json, serving.json)."""
        device = torch.device(device)
        model, spec = load_model(model_dir, map_location=device)
        serving_file = model_dir / SERVING_FILE
        serving = read_json(serving_file, what="serving spec")
        label_names = serving.get("label_names")
        if label_names != spec["label_names"]:
            raise _serving_error("label names differ from the model's config.json", serving_file, "label_names")
        max_pixels = serving.get("max_image_pixels")
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise _serving_error("max_image_pixels must be a positive integer", serving_file, "max_image_pixels")
        if not valid_thresholds(serving.get("thresholds"), len(label_names)):
            message = f"need {len(label_names)} thresholds in [0, 1], one per label"
            raise _serving_error(message, serving_file, "thresholds")
        return cls(
            model=model.to(device),
            label_names=list(label_names),
            thresholds=torch.tensor(serving["thresholds"], dtype=torch.float32),
            image_size=int(spec["image_size"]),
            max_image_pixels=max_pixels,
            device=device,
        )

    def to_input(self, image: bytes, name: str) -> Tensor:
        """Decode and transform exactly like evaluation does; DataError for anything not an image."""
        return to_model_input(decode_image(image, name=name, max_pixels=self.max_image_pixels), self.image_size)

    @torch.inference_mode()
    def probabilities(self, batch: Tensor) -> Tensor:
        """`[B,3,S,S]` → `[B,C]` sigmoid probabilities on the CPU."""
        return torch.sigmoid(self.model(batch.to(self.device)).float()).cpu()

    def answer(self, probabilities: Tensor, all_scores: bool) -> dict[str, Any]:
        """Labels at or above their threshold, highest score first; every score when asked."""
        scores = probabilities.tolist()
        chosen = (probabilities >= self.thresholds).nonzero().flatten().tolist()
        labels = sorted(
            ({"label": self.label_names[i], "score": scores[i]} for i in chosen), key=lambda item: -item["score"]
        )
        answer: dict[str, Any] = {"labels": labels}
        if all_scores:
            answer["scores"] = dict(zip(self.label_names, scores, strict=True))
        return answer


def bad_input_body(error: DataError) -> dict[str, Any]:
    """The JSON body of a 400: TorchServe's error shape, plus our fix."""
    return {"code": BAD_INPUT_STATUS, "type": "BadInput", "message": error.message, "fix": error.fix}
