"""Pretrained backbones: a local weights file, and timm's own hub loading from the Hugging Face
cache with HF_HUB_OFFLINE=1 (how a cluster image or volume gives weights without network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from mlic.errors import ConfigError
from mlic.models.layers import Backbone, PretrainedWeights

#: timm's default pretrained tag of resnet18 and its Hugging Face repository.
HUB_REPO = "timm/resnet18.a1_in1k"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def marked_state_dict() -> dict[str, torch.Tensor]:
    """resnet18's full state_dict (what timm's checkpoints hold) with a recognisable first weight."""
    torch.manual_seed(0)
    state = {name: tensor.clone() for name, tensor in timm.create_model("resnet18").state_dict().items()}
    state["conv1.weight"].fill_(0.125)
    return state


def plant_in_hf_cache(cache: Path, state: dict[str, torch.Tensor]) -> None:
    """The Hugging Face cache layout huggingface_hub resolves offline: refs/main → a snapshot."""
    repo = cache / f"models--{HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / "model.safetensors"))


def backbone_in_subprocess(cache: Path) -> subprocess.CompletedProcess[str]:
    """huggingface_hub reads HF_HUB_OFFLINE when imported: a fresh interpreter with the cache set."""
    code = (
        "from mlic.errors import ConfigError\n"
        "from mlic.models.layers import Backbone, PretrainedWeights\n"
        "try:\n"
        "    backbone = Backbone('resnet18', pretrained=PretrainedWeights())\n"
        "    print(float(backbone.body.conv1.weight.flatten()[0]))\n"
        "except ConfigError as error:\n"
        "    print(error.render())\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_a_local_weights_file_is_loaded(tmp_path: Path) -> None:
    weights = tmp_path / "resnet18.pth"
    torch.save(marked_state_dict(), weights)
    backbone = Backbone("resnet18", pretrained=PretrainedWeights(weights))
    assert torch.all(backbone.body.conv1.weight == 0.125)
    assert not torch.all(Backbone("resnet18").body.conv1.weight == 0.125)  # random init otherwise


def test_a_missing_weights_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Backbone("resnet18", pretrained=PretrainedWeights(tmp_path / "none.pth"))
    assert caught.value.field == "train.pretrained_path" and "none.pth" in str(caught.value)


def test_the_settings_choose_file_hub_or_nothing(tmp_path: Path) -> None:
    assert PretrainedWeights.from_settings(False, None) is None
    assert PretrainedWeights.from_settings(True, None) == PretrainedWeights()
    assert PretrainedWeights.from_settings(True, str(tmp_path)) == PretrainedWeights(tmp_path)


def test_timms_hub_loading_reads_the_hf_cache_offline(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    plant_in_hf_cache(cache, marked_state_dict())
    result = backbone_in_subprocess(cache)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.125", result.stdout + result.stderr


def test_offline_without_the_weights_is_a_config_error_saying_how_to_bake_them(tmp_path: Path) -> None:
    result = backbone_in_subprocess(tmp_path / "hf" / "hub")
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert "[train.pretrained]" in message and "HF_HUB_OFFLINE is set" in message, message
    assert "timm.create_model('resnet18', pretrained=True)" in message and "train.pretrained_path" in message
