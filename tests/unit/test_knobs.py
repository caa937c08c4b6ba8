"""Typed architecture knobs: params.yaml is checked against them, docs are generated from them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlic.config import load_config
from mlic.errors import ConfigError
from mlic.knobs import KNOB_BLOCK, MsrnKnobs, architecture_names, knob_table, with_knob_tables

PROJECT = Path(__file__).resolve().parents[2]


def _params_with(tmp_path: Path, models: dict) -> Path:
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["models"] = models
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({"sgfn": {"atention": "dot"}}, "models.sgfn.atention"),
        ({"sgfn": {"attention": "euclidean"}}, "models.sgfn.attention"),
        ({"msrn": {"semantic_dim": "512"}}, "models.msrn.semantic_dim"),
        ({"msrn": {"gat_hidden": 300.0}}, "models.msrn.gat_hidden"),
        ({"cmasge": {"scales": 2, "feature_stride": 16}}, "models.cmasge.scales"),
        ({"resnet": {}}, "models.resnet"),
    ],
)
def test_a_bad_knob_in_params_fails_when_params_are_read(tmp_path: Path, models: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_params_with(tmp_path, models))
    assert error.value.field == field
    assert str(tmp_path / "params.yaml") in error.value.render()


def test_unlisted_knobs_take_their_defaults(tmp_path: Path) -> None:
    config = load_config(_params_with(tmp_path, {"msrn": {"head": "per_label"}}))
    assert config.model_knobs("msrn") == MsrnKnobs(head="per_label")
    assert config.model_knobs("sgfn").global_semantics == "groups"


def test_an_unknown_architecture_is_refused_by_name(tmp_path: Path) -> None:
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["architectures"] = ["baseline", "msrnn"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.field == "architectures" and "msrnn" in str(error.value)


def test_the_model_docs_carry_the_generated_knob_tables() -> None:
    """Every architecture has its table in docs/models.md, equal to what the classes and
    params.yaml generate (`mlic models --docs docs/models.md` rewrites them)."""
    docs = (PROJECT / "docs" / "models.md").read_text(encoding="utf-8")
    assert sorted(match["arch"] for match in KNOB_BLOCK.finditer(docs)) == sorted(architecture_names())
    assert with_knob_tables(docs, load_config(PROJECT / "params.yaml").models) == docs


def test_a_knob_table_shows_where_params_depart_from_the_default(tmp_path: Path) -> None:
    configured = load_config(_params_with(tmp_path, {"msrn": {"head": "per_label"}})).models.msrn
    cells = [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)] for line in knob_table("msrn", configured).splitlines()
    ]
    rows = {row[1]: row[3:5] for row in cells[2:]}
    assert rows["`head`"] == ["`mlp`", "`per_label`"]  # default, params.yaml
    assert rows["`mlp_hidden`"] == ["`2048`", ""]


def test_reading_params_imports_neither_torch_nor_timm() -> None:
    code = (
        "import sys; from mlic.config import load_config; load_config(sys.argv[1]); "
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PROJECT / "params.yaml")], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def _missing(settings: dict, written: dict, prefix: str = "") -> list[str]:
    """The dotted keys of `settings` (recursively) that `written` lacks."""
    missing = []
    for key, value in settings.items():
        if key not in written:
            missing.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(written[key], dict):
            missing += _missing(value, written[key], f"{prefix}{key}.")
    return missing


def test_params_yaml_lists_every_key_so_an_experiment_can_set_it() -> None:
    """`dvc exp run -S models.mlgcn.label_graph=none` is refused ("Key 'label_graph' is not in
    struct") unless params.yaml has the key: every knob and setting is written there, defaults too."""
    settings = load_config(PROJECT / "params.yaml").model_dump(by_alias=True, mode="json")
    assert _missing(settings, yaml.safe_load((PROJECT / "params.yaml").read_text())) == []
