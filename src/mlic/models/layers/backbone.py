"""timm `features_only` backbones: channels are read from `feature_info`, never hard-coded."""

from __future__ import annotations

from pathlib import Path

import timm
from torch import Tensor, nn

from mlic.errors import ConfigError


class Backbone(nn.Module):
    """A timm feature extractor returning the maps of the requested stages (deepest last)."""

    def __init__(self, name: str, out_indices: tuple[int, ...] = (4,), pretrained_path: str | None = None) -> None:
        super().__init__()
        kwargs: dict = {"features_only": True, "out_indices": out_indices}
        if pretrained_path:
            weights = Path(pretrained_path)
            if not weights.is_file():
                raise ConfigError(
                    "backbone weights file not found",
                    file=weights,
                    field="train.pretrained_path",
                    fix="point it at a local timm state_dict, or set it to null for random init",
                )
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        try:
            self.body = timm.create_model(name, **kwargs)
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot build backbone '{name}' ({exc})", field="train.backbone", fix="use a timm model name"
            ) from exc
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())

    @property
    def out_channels(self) -> int:
        """Channels of the deepest returned stage."""
        return self.channels[-1]

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.body(images)
