"""What the TorchServe handler does, minus TorchServe: parse a request, decode it, score, answer.

It lives apart from mlic/serving/handler.py because TorchServe insists that a handler
module defines exactly one class, and because `mlic package` runs the same code to prove an
archive works before it replaces the last good one.

Request formats (one image per request; TorchServe batches requests):

* raw image bytes, `Content-Type: application/octet-stream` (or `image/*`); add the header
  `X-All-Scores: true` for every label's score (TorchServe 0.12 passes request headers to the
  handler, but not query parameters);
* JSON, `Content-Type: application/json`: `{"image": "<base64 bytes>", "all_scores": true}`;
* KServe's v1 protocol (`POST /v1/models/<name>:predict`, which TorchServe routes to the same
  handler): `{"instances": [{"image": "<base64>", "all_scores": false}, ...]}`, answered
  `{"predictions": [<answer>, ...]}` in the same order.

Answer: `{"labels": [{"label": name, "score": p}, ...]}` — the labels whose probability reaches
their per-class threshold, highest first — plus `"scores": {name: p, ...}` for every label when
asked. A request that cannot be served is answered with `{"code": 400, "type": "BadInput",
"message": ..., "fix": ...}` (the shape of TorchServe's own error bodies). A failure that is not
the request's fault is answered per request too: 500 `InternalServerError` when reading it raised
something unexpected, 503 `PredictionFailed` when the model could not score it even alone (both
name the request id that the model log names).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mlic.data.images import decode_image
from mlic.data.transforms import to_model_input
from mlic.errors import DataError, ServingError
from mlic.io import read_json
from mlic.models.saved import load_model

logger = logging.getLogger(__name__)

#: Extra file in the archive (beside weights.pt and config.json): label names and thresholds.
SERVING_FILE = "serving.json"
BAD_INPUT_STATUS = 400
#: Reading the request raised something that is not bad input: a bug, not the caller's fault.
INTERNAL_ERROR_STATUS = 500
#: The model could not score the image, even alone: worth a retry (the client retries 503s).
PREDICTION_FAILED_STATUS = 503
ALL_SCORES_FIELD = "all_scores"
ALL_SCORES_HEADER = "X-All-Scores"
V1_INSTANCES_FIELD = "instances"
V1_PREDICTIONS_FIELD = "predictions"
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


@dataclass(frozen=True)
class ParsedRequest:
    """The images of one HTTP request: one, or a KServe v1 request's instances."""

    images: list[ImageRequest]
    #: KServe v1: answer `{"predictions": [...]}` (one per instance) rather than the one answer.
    v1: bool = False

    def answer(self, answers: list[dict[str, Any]]) -> dict[str, Any]:
        return {V1_PREDICTIONS_FIELD: answers} if self.v1 else answers[0]


def _instances(value: Any, name: str) -> list[ImageRequest]:
    """KServe v1 `instances`: a non-empty list of our JSON image objects."""
    if not isinstance(value, list) or not value:
        raise DataError(
            f"'{V1_INSTANCES_FIELD}' must be a non-empty list",
            file=name,
            field=V1_INSTANCES_FIELD,
            fix='send {"instances": [{"image": "<base64 bytes>"}]}',
        )
    images = []
    for position, instance in enumerate(value):
        where = f"{name} instance {position}"
        if not isinstance(instance, dict):
            raise DataError("an instance must be a JSON object", file=where, fix='send {"image": "<base64 bytes>"}')
        images.append(_image_from_json(instance, where))
    return images


def _header(headers: dict[str, Any], wanted: str) -> Any:
    """HTTP header names are case-insensitive; TorchServe keeps the client's spelling."""
    return next((value for key, value in headers.items() if key.lower() == wanted.lower()), False)


def parse_request(row: dict[str, Any], headers: dict[str, Any], name: str) -> ParsedRequest:
    """One TorchServe input row (+ its request headers) → image bytes + options; DataError → 400.

    TorchServe hands a raw body over as `body` (multipart form fields by their name; `data` is
    the conventional one), JSON bodies already parsed and `text/*` bodies as str.
    """
    body = row.get("body", row.get("data"))
    if isinstance(body, dict):
        if V1_INSTANCES_FIELD in body:
            return ParsedRequest(_instances(body[V1_INSTANCES_FIELD], name), v1=True)
        return ParsedRequest([_image_from_json(body, name)])
    if isinstance(body, bytes | bytearray):
        return ParsedRequest([ImageRequest(image=bytes(body), all_scores=_flag(_header(headers, ALL_SCORES_HEADER)))])
    if isinstance(body, str):
        raise DataError(
            "request body arrived as text",
            file=name,
            fix="send the image with Content-Type: application/octet-stream (or image/*)",
        )
    raise DataError("request has no image", file=name, fix="send the image bytes as the request body")


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

    def score_each(self, inputs: dict[Hashable, Tensor]) -> dict[Hashable, Tensor | Exception]:
        """Probabilities per image key, or the exception that image's scoring raised.

        One forward pass for the whole batch; when it fails (out of memory on a big batch, a
        kernel error on one odd input) every image is scored alone, so only the images that
        fail on their own are failed and their neighbours are still answered.
        """
        if not inputs:
            return {}
        try:
            batch = self.probabilities(torch.stack(list(inputs.values())))
        except Exception as exc:  # any failure of the batch is retried image by image
            if len(inputs) == 1:
                return dict.fromkeys(inputs, exc)
            logger.warning(
                "scoring a batch of %d failed (%s: %s); scoring each alone", len(inputs), type(exc).__name__, exc
            )
            return {index: self._score_alone(image) for index, image in inputs.items()}
        return dict(zip(inputs, batch, strict=True))

    def _score_alone(self, image: Tensor) -> Tensor | Exception:
        try:
            return self.probabilities(image.unsqueeze(0))[0]
        except Exception as exc:  # returned, so the caller answers this request alone
            return exc

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
    """The JSON body of a 400: TorchServe's error shape, plus our fix and which request (and which
    KServe v1 instance) it was."""
    return {
        "code": BAD_INPUT_STATUS,
        "type": "BadInput",
        "message": error.message,
        "fix": error.fix,
        "where": error.file,
    }


def failure_body(status: int, request_id: str, error: BaseException) -> dict[str, Any]:
    """The JSON body of a 500/503 for one request: what failed and where its traceback is logged."""
    kind = "PredictionFailed" if status == PREDICTION_FAILED_STATUS else "InternalServerError"
    return {
        "code": status,
        "type": kind,
        "message": f"{'scoring' if status == PREDICTION_FAILED_STATUS else 'reading'} the image failed "
        f"({type(error).__name__})",
        "request_id": request_id,
        "fix": f"retry; if it persists, look up request {request_id} in the server's model log",
    }
