"""TorchServe handler for mlic multi-label models (packed into the .mar by `mlic package`).

It subclasses `BaseHandler` rather than `VisionHandler` (which imports captum and switches off
Pillow's decompression-bomb guard). The model is rebuilt by `mlic` from config.json + weights.pt
loaded with `weights_only=True`: no pickled code in the archive. `mlic` must be installed in the
environment TorchServe runs in (the serving image installs it). The file ships inside the package
so a plain (non-editable) install can pack it; `mlic package` copies it into the archive.

Request and answer formats (raw bytes, JSON, KServe v1 instances): see `mlic.serving.predictor`.
Errors are per request: in a batch, an image that cannot be decoded gets its own HTTP 400 with a
JSON message while its neighbours get their predictions (TorchServe 0.12 sends each request the status set with
`context.set_response_status(code, phrase, index)`). Raising `PredictionException` instead would
fail every request of the batch, so it is never raised. A failure that is not bad input stays
per request as well: a request whose reading raised something unexpected gets a 500, and when the
batch's forward pass fails (out of memory, say) each image is scored alone and only those that
fail alone get a 503; both are logged with the request id their error body carries.

TorchServe loads a handler module by requiring exactly one class in it: keep helpers in mlic.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from mlic.errors import DataError
from mlic.serving.predictor import (
    BAD_INPUT_STATUS,
    INTERNAL_ERROR_STATUS,
    PREDICTION_FAILED_STATUS,
    ParsedRequest,
    ServedModel,
    bad_input_body,
    failure_body,
    parse_request,
)

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"


class MlicHandler(BaseHandler):
    """Batch of images in; per image the labels above their thresholds (or a 400 of its own)."""

    def initialize(self, context: Any) -> None:
        """Rebuild the model from the unpacked archive folder TorchServe gives the worker."""
        properties = context.system_properties
        gpu_id = properties.get("gpu_id")
        use_cuda = gpu_id is not None and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{gpu_id}" if use_cuda else "cpu")
        self.served = ServedModel.load(Path(properties["model_dir"]), device=self.device)
        self.initialized = True
        logger.info("mlic model loaded on %s: %d labels", self.device, len(self.served.label_names))

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        """Decode every request, score all their images in one forward pass, answer each in order."""
        self.context = context
        answers: list[str] = [""] * len(data)
        requests: dict[int, ParsedRequest] = {}
        inputs: dict[tuple[int, int], torch.Tensor] = {}
        for index, row in enumerate(data):
            name = f"request {self._request_id(index)}"
            try:
                request = parse_request(row, context.get_all_request_header(index), name)
                images = {
                    (index, position): self.served.to_input(
                        image.image, f"{name} instance {position}" if request.v1 else name
                    )
                    for position, image in enumerate(request.images)
                }
            except DataError as error:
                logger.warning("rejected %s: %s", name, error.message)
                answers[index] = self._reply(index, BAD_INPUT_STATUS, bad_input_body(error))
            except Exception as error:  # a bug in reading one request fails that request only
                answers[index] = self._fail(index, INTERNAL_ERROR_STATUS, error)
            else:
                requests[index] = request
                inputs.update(images)
        scores = self.served.score_each(inputs)
        for index, request in requests.items():
            outcomes = [scores[index, position] for position in range(len(request.images))]
            failure = next((outcome for outcome in outcomes if isinstance(outcome, Exception)), None)
            if failure is not None:
                answers[index] = self._fail(index, PREDICTION_FAILED_STATUS, failure)
                continue
            each = [self.served.answer(p, image.all_scores) for p, image in zip(outcomes, request.images, strict=True)]
            answers[index] = self._reply(index, 200, request.answer(each))
        return answers

    def _request_id(self, index: int) -> str:
        return str(self.context.get_request_id(index) or index)

    def _fail(self, index: int, status: int, error: Exception) -> str:
        """Log the traceback under the request id the answer names, and answer that request alone."""
        request_id = self._request_id(index)
        logger.error("request %s failed with HTTP %d", request_id, status, exc_info=error)
        return self._reply(index, status, failure_body(status, request_id, error))

    def _reply(self, index: int, status: int, body: dict[str, Any]) -> str:
        """Per-request status and JSON content type, so one failed image fails only itself."""
        if status != 200:
            self.context.set_response_status(status, HTTPStatus(status).phrase, index)
        self.context.set_response_content_type(index, JSON_CONTENT_TYPE)
        return json.dumps(body)
