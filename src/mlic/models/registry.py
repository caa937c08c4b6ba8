"""Model registry and factory (timm-style): `@register_model` on each architecture's builder.

Every model maps images `[B,3,H,W]` to logits `[B,C]`. A model is rebuilt from its JSON config
plus its state_dict (graph inputs are buffers), so nothing pickled is ever loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from torch import nn

from mlic.config import config_error
from mlic.errors import ConfigError
from mlic.graph.label_graph import LabelGraph
from mlic.knobs import Knobs, knobs_class
from mlic.models.layers.backbone import PretrainedWeights


@dataclass(frozen=True)
class ModelInputs:
    """What every builder gets besides its knobs: the label set, its graph, the backbone."""

    num_classes: int
    graph: LabelGraph
    backbone: str
    pretrained: PretrainedWeights | None = None


#: `builder(inputs=..., knobs=...)`: the knobs are the architecture's class in mlic.knobs, validated.
ModelBuilder = Callable[..., nn.Module]
_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder; its knobs are `models.<name>` (mlic.knobs), so the name must have a class there."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        knobs_class(name)
        _MODELS[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(_MODELS)


def validate_knobs(name: str, knobs: Knobs | Mapping[str, Any]) -> Knobs:
    """The architecture's typed knobs from a mapping (a saved spec, a test) or as they are;
    a bad knob is a ConfigError naming `models.<name>.<knob>`."""
    if isinstance(knobs, Knobs):
        return knobs
    try:
        return knobs_class(name).model_validate(dict(knobs))
    except ValidationError as exc:
        raise config_error(exc, "models", prefix=("models", name)) from None


def create_model(
    name: str,
    num_classes: int,
    graph: LabelGraph,
    backbone: str = "resnet18",
    pretrained: PretrainedWeights | None = None,
    knobs: Knobs | Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build architecture `name` from its knobs (typed, or a mapping of the ones that depart from
    the defaults); unknown names and bad knobs are ConfigErrors naming the field."""
    if name not in _MODELS:
        raise ConfigError(
            f"unknown architecture '{name}'",
            field="architectures",
            fix=f"choose from {', '.join(sorted(_MODELS))}",
        )
    if graph.num_classes != num_classes:
        raise ConfigError(
            f"graph has {graph.num_classes} labels but the model is asked for {num_classes}",
            field="graph",
            fix="re-run the graph step on the current prepared data",
        )
    typed = validate_knobs(name, knobs if knobs is not None else {})
    inputs = ModelInputs(num_classes, graph, backbone, pretrained)
    return _MODELS[name](inputs=inputs, knobs=typed)


def model_spec(
    arch: str, graph: LabelGraph, backbone: str, image_size: int, knobs: Knobs | Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON config saved beside a state_dict: enough to rebuild the module exactly (every
    knob written out, so a later change of a default cannot change a saved model)."""
    return {
        "arch": arch,
        "backbone": backbone,
        "num_classes": graph.num_classes,
        "embedding_dim": graph.embedding_dim,
        "image_size": image_size,
        "label_names": list(graph.label_names),
        "knobs": validate_knobs(arch, knobs).model_dump(mode="json"),
    }


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained module with the right shapes; load its state_dict afterwards."""
    graph = LabelGraph.placeholder(spec["num_classes"], spec["embedding_dim"])
    return create_model(spec["arch"], spec["num_classes"], graph, backbone=spec["backbone"], knobs=spec["knobs"])
