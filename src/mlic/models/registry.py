"""Model registry and factory (timm-style): `@register_model` on each architecture's builder.

Every model maps images `[B,3,H,W]` to logits `[B,C]`. A model is rebuilt from its JSON config
plus its state_dict (graph inputs are buffers), so nothing pickled is ever loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from mlic.errors import ConfigError
from mlic.graph.label_graph import LabelGraph

ModelBuilder = Callable[..., nn.Module]
_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder `fn(num_classes, graph, backbone, pretrained_path, **knobs) -> nn.Module`."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        _MODELS[name] = builder
        return builder

    return decorate


def _ensure_builtin_models() -> None:
    """Import the architecture modules so their decorators run (once)."""
    import mlic.models.architectures  # noqa: F401


def list_models() -> list[str]:
    _ensure_builtin_models()
    return sorted(_MODELS)


def create_model(
    name: str,
    num_classes: int,
    graph: LabelGraph,
    backbone: str = "resnet18",
    pretrained_path: str | None = None,
    **knobs: Any,
) -> nn.Module:
    """Build architecture `name`; unknown names and unknown knobs are ConfigErrors naming the field."""
    _ensure_builtin_models()
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
    builder = _MODELS[name]
    _check_knobs(name, builder, knobs)
    return builder(num_classes=num_classes, graph=graph, backbone=backbone, pretrained_path=pretrained_path, **knobs)


def _check_knobs(name: str, builder: ModelBuilder, knobs: dict[str, Any]) -> None:
    """Reject unknown knobs up front (by signature), so a TypeError deep inside a model is never
    mistaken for the user's typo."""
    accepted = set(inspect.signature(builder).parameters) - {"num_classes", "graph", "backbone", "pretrained_path"}
    unknown = sorted(set(knobs) - accepted)
    if unknown:
        raise ConfigError(
            f"architecture '{name}' has no knob {', '.join(repr(k) for k in unknown)}",
            field=f"models.{name}.{unknown[0]}",
            fix=f"use one of: {', '.join(sorted(accepted)) or '(none)'} (see docs/models.md)",
        )


def model_spec(
    arch: str, graph: LabelGraph, backbone: str, image_size: int, knobs: dict[str, Any]
) -> dict[str, Any]:
    """The JSON config saved beside a state_dict: enough to rebuild the module exactly."""
    return {
        "arch": arch,
        "backbone": backbone,
        "num_classes": graph.num_classes,
        "embedding_dim": graph.embedding_dim,
        "image_size": image_size,
        "label_names": list(graph.label_names),
        "knobs": dict(knobs),
    }


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained module with the right shapes; load its state_dict afterwards."""
    graph = LabelGraph.placeholder(spec["num_classes"], spec["embedding_dim"])
    return create_model(spec["arch"], spec["num_classes"], graph, backbone=spec["backbone"], **spec["knobs"])
