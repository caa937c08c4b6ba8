"""timm `features_only` backbones, addressed by output stride.

The papers speak of "stages 2–4" of a ResNet, which are the stride 8/16/32 maps. Other families
number their levels differently (ConvNeXt and TResNet start at stride 4, EfficientNet at 2), so
stages are chosen by their reduction from `feature_info`, and channels are read from it too —
never hard-coded.

The body runs channels-last (NHWC): oneDNN's and cuDNN's fast convolutions want it, and on the
demo's CPU it takes 2–17 % off every model's training step (docs/results.md, speed). The heads
do not: their reshapes of `[B, C, H, W]` into rows of locations would each copy a channels-last
map, and with the whole model channels-last MSRN's step ran about 6× slower (one run, with other
work on the machine). So the maps leave the backbone contiguous again, a copy of a few small
tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from mlic.errors import ConfigError
from mlic.knobs import FeatureStride

#: The strides of ResNet stages 2–4: what the multi-layer models (MSRN, MGSGN, SGFN) read.
STAGES_2_TO_4 = (8, 16, 32)


class Backbone(nn.Module):
    """A timm feature extractor returning the maps at `strides` (shallowest first, deepest last).

    `output_stride` 16 dilates the last stage instead of striding it (timm's `output_stride`,
    as in DeepLab): the deepest, most semantic map comes back at stride 16, twice as fine. Ask
    for it with `strides=(16,)`, since at each stride the deepest level is returned.
    """

    def __init__(
        self,
        name: str,
        strides: tuple[int, ...] = (32,),
        pretrained_path: str | None = None,
        output_stride: int | None = None,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"features_only": True}
        if output_stride is not None:
            kwargs["output_stride"] = output_stride
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
        except TypeError as exc:
            if output_stride is None:
                raise
            # A timm family without the `output_stride` argument (TResNet).
            raise ConfigError(
                f"backbone '{name}' cannot dilate its last stage ({exc})",
                field="train.backbone",
                fix="use a backbone that takes output_stride (ResNet, ConvNeXt, EfficientNet), "
                "or set the model's feature_stride: 32",
            ) from exc
        all_reductions = list(self.body.feature_info.reduction())
        all_channels = list(self.body.feature_info.channels())
        missing = [stride for stride in strides if stride not in all_reductions]
        if missing:
            raise ConfigError(
                f"backbone '{name}' has no feature map at stride {missing} (it offers {all_reductions})",
                field="train.backbone",
                fix="use a hierarchical timm backbone (ResNet, TResNet, ConvNeXt, EfficientNet, ...)",
            )
        # The last level at a stride is the deepest (most semantic) map of that resolution.
        self.level_indices: list[int] = [len(all_reductions) - 1 - all_reductions[::-1].index(s) for s in strides]
        self.channels: list[int] = [all_channels[i] for i in self.level_indices]
        self.reductions: list[int] = list(strides)
        self.use_channels_last(True)

    def use_channels_last(self, enabled: bool) -> None:
        """Run the body in NHWC (the default) or NCHW; `bench/speed.py` times both side by side."""
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        self.body.to(memory_format=self.memory_format)

    @classmethod
    def deepest(cls, name: str, pretrained_path: str | None, feature_stride: FeatureStride = 32) -> Backbone:
        """The last stage alone, at `feature_stride` (dilated when 16)."""
        output_stride = None if feature_stride == 32 else feature_stride
        return cls(name, strides=(feature_stride,), pretrained_path=pretrained_path, output_stride=output_stride)

    @property
    def out_channels(self) -> int:
        """Channels of the deepest returned stage."""
        return self.channels[-1]

    def forward(self, images: Tensor) -> list[Tensor]:
        levels = self.body(images.contiguous(memory_format=self.memory_format))
        return [levels[i].contiguous() for i in self.level_indices]
