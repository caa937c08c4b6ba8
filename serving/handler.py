"""TorchServe handler for mlic multi-label models (packed into the .mar by `mlic package`).

It subclasses `BaseHandler` rather than `VisionHandler` (which imports captum and switches off
Pillow's decompression-bomb guard). The model is rebuilt by `mlic` from config.json + weights.pt
loaded with `weights_only=True`: no pickled code in the archive. `mlic` must be installed in the
environment TorchServe runs in (the serving image installs it).

Request and answer formats: see `mlic.serving.predictor`. Errors are per request: in a batch,
an image that cannot be decoded gets its own HTTP 400 with a JSON message while its neighbours
get their predictions (TorchServe 0.12 sends each request the status set with
`context.set_response_status(code, phrase, index)`). Raising `PredictionException` instead would
fail every request of the batch, so it is never raised for bad input.

TorchServe loads a handler module by requiring exactly one class in it: keep helpers in mlic.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from mlic.errors import DataError
from mlic.serving.predictor import BAD_INPUT_STATUS, ServedModel, bad_input_body, parse_request

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
        """Decode every request, score the good ones in one forward pass, answer each in order."""
        self.context = context
        answers: list[str] = [""] * len(data)
        inputs: dict[int, torch.Tensor] = {}
        wants_all_scores: dict[int, bool] = {}
        for index, row in enumerate(data):
            name = f"request {context.get_request_id(index) or index}"
            try:
                request = parse_request(row, context.get_all_request_header(index), name)
                inputs[index] = self.served.to_input(request.image, name)
                wants_all_scores[index] = request.all_scores
            except DataError as error:
                logger.warning("rejected %s: %s", name, error.message)
                answers[index] = self._reply(index, BAD_INPUT_STATUS, bad_input_body(error))
        if inputs:
            probabilities = self.served.probabilities(torch.stack(list(inputs.values())))
            for index, row_probabilities in zip(inputs, probabilities, strict=True):
                answers[index] = self._reply(index, 200, self.served.answer(row_probabilities, wants_all_scores[index]))
        return answers

    def _reply(self, index: int, status: int, body: dict[str, Any]) -> str:
        """Per-request status and JSON content type, so one bad image fails only itself."""
        if status != 200:
            self.context.set_response_status(status, "Bad Request", index)
        self.context.set_response_content_type(index, JSON_CONTENT_TYPE)
        return json.dumps(body)
