"""The serving pieces that need no running TorchServe: request parsing, answers, the handler's batch."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
import ts
from PIL import Image
from ts.context import Context, RequestProcessor

from mlic.errors import DataError, ServingError
from mlic.serving.archive import HANDLER_FILE, load_handler_class, read_properties, write_properties
from mlic.serving.client import format_answer
from mlic.serving.predictor import SERVING_FILE, ImageRequest, ServedModel, parse_request
from mlic.serving.probe import probe_image

PNG = probe_image()


def test_raw_bytes_with_all_scores_header_in_any_case() -> None:
    assert parse_request({"body": PNG}, {}, "r").images[0].all_scores is False
    (request,) = parse_request({"body": bytearray(PNG)}, {"x-all-scores": "True"}, "r").images
    assert request.image == PNG and request.all_scores is True


def test_json_request_with_base64_image() -> None:
    body = {"image": base64.b64encode(PNG).decode(), "all_scores": True}
    parsed = parse_request({"body": body}, {}, "r")
    assert not parsed.v1 and parsed.images == [ImageRequest(PNG, all_scores=True)]
    assert parsed.answer([{"labels": []}]) == {"labels": []}


def test_kserve_v1_instances_in_predictions_out() -> None:
    encoded = base64.b64encode(PNG).decode()
    parsed = parse_request(
        {"body": {"instances": [{"image": encoded}, {"image": encoded, "all_scores": True}]}}, {}, "r"
    )
    assert parsed.v1 and parsed.images == [ImageRequest(PNG, False), ImageRequest(PNG, True)]
    assert parsed.answer([{"labels": []}, {"labels": [1]}]) == {"predictions": [{"labels": []}, {"labels": [1]}]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"body": {"image": "@@not base64@@"}}, "not valid base64"),
        ({"body": {"picture": "abc"}}, "no 'image'"),
        ({"body": {"image": base64.b64encode(PNG).decode(), "all_scores": "yes"}}, "true or false"),
        ({"body": "text"}, "arrived as text"),
        ({}, "no image"),
        ({"body": {"instances": []}}, "non-empty list"),
        ({"body": {"instances": ["abc"]}}, "must be a JSON object"),
        ({"body": {"instances": [{"image": "@@"}]}}, "not valid base64"),
    ],
)
def test_malformed_requests_are_data_errors(row: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        parse_request(row, {}, "request 7")
    assert caught.value.file.startswith("request 7") and caught.value.fix


@pytest.fixture
def model_folder(packaged_root: Path, tmp_path: Path) -> Path:
    """The files an unpacked archive holds (weights, config, serving spec)."""
    with zipfile.ZipFile(packaged_root / "artifacts" / "serving" / "model-store" / "mlic.mar") as bundle:
        bundle.extractall(tmp_path)
    return tmp_path


def test_answer_keeps_labels_at_their_threshold_sorted_by_score(model_folder: Path) -> None:
    served = ServedModel.load(model_folder)
    served = dataclasses.replace(served, thresholds=torch.tensor([0.2, 0.5, 0.6, 0.9]))
    answer = served.answer(torch.tensor([0.3, 0.8, 0.6, 0.95]), all_scores=False)
    assert answer == {
        "labels": [
            {"label": "street", "score": pytest.approx(0.95)},
            {"label": "sea", "score": pytest.approx(0.8)},
            {"label": "car", "score": pytest.approx(0.6)},
            {"label": "boat", "score": pytest.approx(0.3)},
        ]
    }
    everything = served.answer(torch.tensor([0.1, 0.2, 0.3, 0.4]), all_scores=True)
    assert everything["labels"] == []
    assert everything["scores"] == pytest.approx({"boat": 0.1, "sea": 0.2, "car": 0.3, "street": 0.4})


def test_serving_spec_must_match_the_model(model_folder: Path) -> None:
    spec_file = model_folder / SERVING_FILE
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, "thresholds": spec["thresholds"][:2]}))
    with pytest.raises(ServingError, match="thresholds"):
        ServedModel.load(model_folder)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns, then we refuse
def test_handler_answers_each_request_of_a_batch_on_its_own(model_folder: Path) -> None:
    """Undecodable, empty or too large images get their own 400; their neighbours get predictions."""
    spec_file = model_folder / SERVING_FILE
    spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), "max_image_pixels": 32 * 32}))
    manifest = json.loads((model_folder / "MAR-INF" / "MANIFEST.json").read_text())
    handler = load_handler_class(HANDLER_FILE)()
    context = Context("mlic", str(model_folder), manifest, 4, None, ts.__version__)
    handler.initialize(context)
    rows = [
        {"body": PNG},
        {"body": b"not an image"},
        {"body": {"image": base64.b64encode(PNG).decode()}},
        {"body": b""},
        {"body": probe_image(size=33)},
        {"body": {"instances": [{"image": base64.b64encode(PNG).decode()}] * 2}},  # KServe v1
        {
            "body": {
                "instances": [{"image": base64.b64encode(PNG).decode()}, {"image": base64.b64encode(b"x").decode()}]
            }
        },
    ]
    context.request_processor = [RequestProcessor({}) for _ in rows]
    answers = [json.loads(answer) for answer in handler.handle(rows, context)]
    statuses = [context.get_response_status(index)[0] for index in range(len(rows))]
    assert statuses == [200, 400, 200, 400, 400, 200, 400]
    assert answers[0] == answers[2] and "boat" in [item["label"] for item in answers[0]["labels"]]
    assert answers[1]["type"] == "BadInput" and "cannot decode image" in answers[1]["message"]
    assert answers[3]["message"] == "empty image data"
    assert "over the cap of 1024" in answers[4]["message"]
    assert answers[5] == {"predictions": [answers[0], answers[0]]}
    assert answers[6]["type"] == "BadInput" and answers[6]["where"] == "request 6 instance 1"
    assert all(context.get_response_content_type(index) == "application/json" for index in range(len(rows)))


class _FailsOnBatchesAndBlankImages(torch.nn.Module):
    """The served model, except that a batch of two or more runs out of memory and a blank image
    breaks its kernel even alone: what a real failure that is not bad input looks like."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if len(batch) > 1:
            raise torch.OutOfMemoryError("simulated: not enough memory for the batch")
        if batch.flatten(2).std(dim=2).max() == 0:  # every channel flat: the blank image
            raise RuntimeError("simulated kernel failure")
        return self.model(batch)


class _ReadingRaises(ServedModel):
    def to_input(self, image: bytes, name: str) -> torch.Tensor:
        if image == b"trips a bug":
            raise KeyError("simulated bug while reading")
        return super().to_input(image, name)


def test_a_failure_that_is_not_bad_input_fails_only_its_own_request(
    model_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch's forward pass fails: each image is scored alone; only the one that fails alone
    gets a 503, a request whose reading raised gets a 500, and both are logged with their id."""
    manifest = json.loads((model_folder / "MAR-INF" / "MANIFEST.json").read_text())
    handler = load_handler_class(HANDLER_FILE)()
    context = Context("mlic", str(model_folder), manifest, 4, None, ts.__version__)
    handler.initialize(context)
    served = handler.served
    handler.served = _ReadingRaises(**{**vars(served), "model": _FailsOnBatchesAndBlankImages(served.model)})
    blank = io.BytesIO()
    Image.new("RGB", (32, 32)).save(blank, format="PNG")
    rows = [{"body": PNG}, {"body": blank.getvalue()}, {"body": b"trips a bug"}, {"body": PNG}]
    context.request_processor = [RequestProcessor({}) for _ in rows]
    context.request_ids = {index: f"id-{index}" for index in range(len(rows))}
    answers = [json.loads(answer) for answer in handler.handle(rows, context)]
    assert [context.get_response_status(index)[0] for index in range(len(rows))] == [200, 503, 500, 200]
    assert answers[0] == answers[3] and "labels" in answers[0]
    assert answers[1]["type"] == "PredictionFailed" and answers[1]["request_id"] == "id-1"
    assert "RuntimeError" in answers[1]["message"] and "id-1" in answers[1]["fix"]
    assert answers[2]["type"] == "InternalServerError" and answers[2]["request_id"] == "id-2"
    logged = {record.getMessage() for record in caplog.records if record.levelname == "ERROR"}
    assert logged == {"request id-1 failed with HTTP 503", "request id-2 failed with HTTP 500"}


def test_properties_round_trip_keeps_backslashes(tmp_path: Path) -> None:
    values = {"allowed_urls": r"^file://.*\.mar$", "models": '{"a":{"1":{}}}'}
    written = write_properties(tmp_path / "config.properties", values, "two\nlines")
    assert written.read_text().startswith("# two\n# lines\n")
    assert read_properties(written) == values


def test_format_answer_is_one_readable_line() -> None:
    answer = {"labels": [{"label": "boat", "score": 0.931}], "scores": {"sea": 0.2, "boat": 0.931}}
    assert format_answer(Path("a.png"), answer) == "a.png: boat 0.93 | all: boat 0.93, sea 0.20"
    assert format_answer("b.png", {"labels": []}) == "b.png: no label above its threshold"


def test_reference_config_in_serving_folder_matches_what_package_writes() -> None:
    from mlic.config import PackageConfig
    from mlic.serving.archive import serving_properties

    reference = Path(__file__).resolve().parents[2] / "deploy" / "torchserve.config.properties"
    assert read_properties(reference) == serving_properties(PackageConfig())
