"""params.yaml → typed, validated configuration (the one place that knows the schema).

Every knob of every step lives in params.yaml (DVC tracks it per stage). Unknown keys and wrong
types are rejected here with the dotted field name, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlic.errors import ConfigError
from mlic.knobs import Knobs, ModelsKnobs, architecture_names

DEFAULT_PARAMS = Path("params.yaml")


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class SplitConfig(Strict):
    """Fractions of the images held out; the rest is the training set.

    With a published test set (COCO files per split, VOC's test list), `test` is unused and `val`
    is the fraction of the training images carved out for validation.
    """

    val: float = Field(0.15, ge=0.0, lt=1.0)
    test: float = Field(0.2, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.val + self.test >= 0.9:
            raise ValueError("val + test must leave at least 10% of images for training")
        return self


class SyntheticConfig(Strict):
    """Knobs of the embedded benchmark generator (mlic.data.synthetic)."""

    num_images: int = Field(900, ge=30)
    image_size: int = Field(96, ge=32, le=1024)
    min_objects: int = Field(2, ge=1)
    max_objects: int = Field(4, ge=1)
    #: Relative object sizes (fraction of the image side): small ones need multi-scale features.
    object_scales: list[float] = Field(default_factory=lambda: [0.12, 0.22, 0.38])
    #: Probability that an object is drawn from the scene's typical set (else any category).
    context_strength: float = Field(0.9, ge=0.0, le=1.0)
    #: Probability that the backdrop is the image's own scene (else any scene's): weak on purpose,
    #: so the companions, not the background colour, carry the context.
    background_context: float = Field(0.3, ge=0.0, le=1.0)
    #: Pixel noise added to every image (0..1 of the value range).
    noise: float = Field(0.08, ge=0.0, le=1.0)
    #: Cap on training images per label, so label priors matter (None = no cap).
    max_train_per_label: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _objects_range(self) -> SyntheticConfig:
        if self.max_objects < self.min_objects:
            raise ValueError("max_objects must be >= min_objects")
        return self


class CocoConfig(Strict):
    include_crowd: bool = True
    #: Images without any (kept) annotation — about 1% of COCO train2017: drop them (counted in
    #: prepare's summary), keep them as label-less images (validate then needs
    #: validate.allow_unlabeled), or stop with an error naming the first one.
    unlabeled: Literal["drop", "keep", "error"] = "drop"


class VocConfig(Strict):
    use_difficult: bool = False
    #: ImageSets/Main/<name>.txt files used as train/val/test when present (else random split);
    #: without a `val` entry, val is carved from train (data.split.val of it), e.g. VOC 2007's
    #: published protocol {train: trainval, test: test}.
    image_sets: dict[str, str] = Field(default_factory=lambda: {"train": "train", "val": "val", "test": "test"})


#: A path, or one per split (the published protocols: train and test files; val optional).
SplitPaths = str | dict[Literal["train", "val", "test"], str]


class DataConfig(Strict):
    source: Literal["synthetic", "coco", "voc"] = "synthetic"
    #: coco: the instances JSON, or one per split ({train: instances_train2014.json, test:
    #: instances_val2014.json}: val is then carved from train); voc: the VOC root (holding
    #: Annotations/ and JPEGImages/).
    path: SplitPaths | None = None
    #: coco only: the folder of images named by file_name, or one per split (same keys as a per-split path).
    image_dir: SplitPaths | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = 0
    #: Decompression-bomb guard for every image we open.
    max_image_pixels: int = Field(50_000_000, ge=1)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    coco: CocoConfig = Field(default_factory=CocoConfig)
    voc: VocConfig = Field(default_factory=VocConfig)

    @model_validator(mode="after")
    def _path_for_real_sources(self) -> DataConfig:
        if self.source != "synthetic" and not self.path:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        if self.source == "coco" and not self.image_dir:
            raise ValueError("data.image_dir is required when data.source is 'coco'")
        if isinstance(self.path, dict):
            if self.source != "coco":
                raise ValueError("data.path per split is for coco; voc takes its splits from data.voc.image_sets")
            if not {"train", "test"} <= set(self.path):
                raise ValueError("data.path per split needs at least 'train' and 'test' (val is carved from train)")
        if isinstance(self.image_dir, dict) and (
            not isinstance(self.path, dict) or set(self.image_dir) != set(self.path)
        ):
            raise ValueError("data.image_dir per split needs data.path per split with the same keys")
        return self


class ValidateConfig(Strict):
    min_positives: int = Field(3, ge=1)
    allow_unlabeled: bool = False


class EmbeddingsConfig(Strict):
    #: minilm: the offline sentence-embedding package; file: a GloVe-style text file.
    source: Literal["minilm", "file"] = "minilm"
    path: str | None = None

    @model_validator(mode="after")
    def _file_needs_path(self) -> EmbeddingsConfig:
        if self.source == "file" and not self.path:
            raise ValueError("graph.embeddings.path is required when graph.embeddings.source is 'file'")
        return self


class GraphConfig(Strict):
    #: τ: conditional probabilities below it are dropped (ML-GCN binarisation).
    threshold: float = Field(0.4, ge=0.0, le=1.0)
    #: p: total weight given to a label's neighbours (ML-GCN re-weighting); 1-p stays on itself.
    reweight: float = Field(0.2, ge=0.0, le=1.0)
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)


class TrainConfig(Strict):
    backbone: str = "resnet18"
    #: ImageNet weights for the backbone through timm's own loading (the Hugging Face Hub; with
    #: HF_HUB_OFFLINE=1 only from the HF cache, HF_HOME/HF_HUB_CACHE), e.g. baked into an image.
    pretrained: bool = False
    #: A local weights file for the backbone (timm state_dict); wins over `pretrained`, downloads nothing.
    pretrained_path: str | None = None
    image_size: int = Field(96, ge=32, le=1024)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: Multiplier on lr for the non-backbone (head / graph) parameters.
    head_lr_scale: float = Field(1.0, gt=0)
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Mixed precision on CUDA (bf16 autocast); ignored on CPU.
    amp: bool = True
    augment: bool = True
    #: Stop when the loss is NaN/inf or above this value.
    max_loss: float = Field(100.0, gt=0)
    #: Only for quick tests: cap the optimizer steps per epoch (None = the whole epoch).
    max_steps_per_epoch: int | None = Field(None, ge=1)


class EvaluateConfig(Strict):
    #: The gate: the chosen model's test mAP (%) below this stops the run; nothing is packaged.
    min_map: float = Field(30.0, ge=0.0, le=100.0)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    top_k: int = Field(3, ge=1)
    #: Choose per-class thresholds on the validation split (max F1), else use `threshold`.
    tune_thresholds: bool = True


class PackageConfig(Strict):
    model_name: str = "mlic"
    version: str = "1.0"
    batch_size: int = Field(8, ge=1)
    max_batch_delay_ms: int = Field(50, ge=0)
    #: Largest request body TorchServe accepts (bytes).
    max_request_size: int = Field(10 * 1024 * 1024, ge=1024)
    workers: int = Field(1, ge=1)


class Config(Strict):
    architectures: list[str] = Field(default_factory=lambda: ["baseline", "mlgcn"])
    data: DataConfig = Field(default_factory=DataConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    graph: GraphConfig = Field(default_factory=GraphConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    #: Per-architecture knobs, typed (mlic.knobs): a model is built from `models.<arch>`.
    models: ModelsKnobs = Field(default_factory=ModelsKnobs)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @field_validator("architectures")
    @classmethod
    def _archs_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one architecture")
        if len(set(value)) != len(value):
            raise ValueError("architectures are listed twice")
        unknown = [arch for arch in value if arch not in architecture_names()]
        if unknown:
            raise ValueError(f"unknown architecture {unknown[0]!r}: choose from {', '.join(architecture_names())}")
        return value

    def model_knobs(self, arch: str) -> Knobs:
        return self.models.of(arch)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


def _parse_scalar(text: str) -> Any:
    """Parse an override value the way YAML would (numbers, booleans, null, lists)."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (DVC's -S syntax) onto the raw params dictionary."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value", field=item, fix="write e.g. train.epochs=3")
        dotted, value = item.split("=", 1)
        node = raw
        keys = dotted.strip().split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"'{key}' is not a section", field=dotted, fix="override a leaf key")
            node = child
        node[keys[-1]] = _parse_scalar(value)
    return raw


def config_error(exc: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> ConfigError:
    """A pydantic error as a ConfigError naming each dotted field; `prefix` places a section
    validated on its own (an architecture's knobs: `("models", arch)`)."""
    lines = []
    fields = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in (*prefix, *err["loc"])) or "(top level)"
        loc = loc.replace("validate_", "validate")
        fields.append(loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{loc}'")
        else:
            lines.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return ConfigError(
        "invalid parameters: " + "; ".join(lines),
        file=source,
        field=fields[0] if fields else None,
        fix="correct the key/value (see the comments in params.yaml for every knob, docs/models.md for models.*)",
    )


def config_from_dict(raw: dict[str, Any], source: str = "<params>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, source) from None


def load_config(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | None = None) -> Config:
    """Read params.yaml, apply overrides, validate. Raises ConfigError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("parameters file not found", file=path, fix="run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", file=path, fix="repair the YAML syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping of sections", file=path, fix="see params.yaml")
    raw = apply_overrides(raw, overrides or [])
    return config_from_dict(raw, str(path))
