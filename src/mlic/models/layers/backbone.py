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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from mlic.errors import ConfigError
from mlic.knobs import FeatureStride

#: The strides of ResNet stages 2–4: what the multi-layer models (MSRN, MGSGN, SGFN) read.
STAGES_2_TO_4 = (8, 16, 32)


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's pretrained weights come from: a local timm state_dict (`file`), or, with
    no file, timm's own loading from the Hugging Face Hub, which honours HF_HUB_OFFLINE and the
    cache variables (HF_HOME, HF_HUB_CACHE): an image or a volume with the weights in that cache
    trains offline (docs/operations.md)."""

    file: Path | None = None

    @classmethod
    def from_settings(cls, pretrained: bool, pretrained_path: str | None) -> PretrainedWeights | None:
        """`train.pretrained_path` (a file) wins; `train.pretrained` alone means timm's hub; neither: random init."""
        if pretrained_path:
            return cls(Path(pretrained_path))
        return cls() if pretrained else None

    def timm_arguments(self) -> dict[str, Any]:
        """What `timm.create_model` takes to load these weights; a missing file is a ConfigError."""
        if self.file is None:
            return {"pretrained": True}
        if not self.file.is_file():
            raise ConfigError(
                "backbone weights file not found",
                file=self.file,
                field="train.pretrained_path",
                fix="point it at a local timm state_dict, or set it to null for random init",
            )
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(self.file)}}


def _hub_error(name: str, exc: Exception) -> ConfigError:
    """Why timm could not fetch `name`'s weights, with the ways to give them offline."""
    from huggingface_hub import constants  # what timm's download read: the variables as huggingface_hub parsed them

    offline, cache = constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE
    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
    return ConfigError(
        f"cannot load pretrained weights for backbone '{name}' from timm's hub"
        f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {type(exc).__name__}: {reason}",
        field="train.pretrained",
        fix=f"put the weights in the Hugging Face cache ({cache}) beforehand, e.g. with network: "
        f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\"; or give a local "
        "file with train.pretrained_path; or set train.pretrained: false",
    )


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
        pretrained: PretrainedWeights | None = None,
        output_stride: int | None = None,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"features_only": True}
        if output_stride is not None:
            kwargs["output_stride"] = output_stride
        if pretrained is not None:
            kwargs.update(pretrained.timm_arguments())
        try:
            self.body = timm.create_model(name, **kwargs)
        except (OSError, ValueError) as exc:  # huggingface_hub's offline / not-cached / HTTP errors
            if pretrained is None or pretrained.file is not None:
                raise
            raise _hub_error(name, exc) from exc
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
    def deepest(cls, name: str, pretrained: PretrainedWeights | None, feature_stride: FeatureStride = 32) -> Backbone:
        """The last stage alone, at `feature_stride` (dilated when 16)."""
        output_stride = None if feature_stride == 32 else feature_stride
        return cls(name, strides=(feature_stride,), pretrained=pretrained, output_stride=output_stride)

    @property
    def out_channels(self) -> int:
        """Channels of the deepest returned stage."""
        return self.channels[-1]

    def forward(self, images: Tensor) -> list[Tensor]:
        levels = self.body(images.contiguous(memory_format=self.memory_format))
        return [levels[i].contiguous() for i in self.level_indices]
