from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import load_config
from mlic.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_project_params_file_is_valid_and_lists_known_architectures():
    from mlic.knobs import architecture_names
    from mlic.models import list_models

    config = load_config(PROJECT / "params.yaml")
    assert set(config.architectures) <= set(list_models())
    assert set(architecture_names()) == set(list_models()), "every registered model has its knobs class"


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_is_named_with_its_section(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_config(_write(tmp_path, {"train": {"epoch": 3}}))
    assert "train.epoch" in str(excinfo.value) and str(tmp_path / "params.yaml") in str(excinfo.value)


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(_write(tmp_path, {"train": {"batch_size": "many"}}))


def test_overrides_parse_like_yaml_and_are_validated(tmp_path):
    path = _write(tmp_path, {})
    config = load_config(path, ["train.epochs=3", "architectures=[baseline]", "data.synthetic.noise=0.1"])
    assert config.train.epochs == 3 and config.architectures == ["baseline"] and config.data.synthetic.noise == 0.1
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["train.epochs"])
    with pytest.raises(ConfigError, match="greater than or equal to 1"):
        load_config(path, ["train.epochs=0"])


def test_real_sources_need_a_path(tmp_path):
    with pytest.raises(ConfigError, match="data.path is required"):
        load_config(_write(tmp_path, {"data": {"source": "voc"}}))


def test_help_lists_every_step():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("prepare", "validate", "graph", "train", "evaluate", "package", "serve", "predict"):
        assert command in result.output


def test_cli_prints_config_errors_without_traceback(tmp_path):
    path = _write(tmp_path, {"graph": {"threshold": 3}})
    result = runner.invoke(app, ["graph", "--params", str(path), "--root", str(tmp_path)])
    assert result.exit_code == ConfigError.exit_code
    assert "graph.threshold" in result.output and "Traceback" not in result.output


def test_unknown_model_knob_is_a_config_error_naming_it(tmp_path):
    from mlic.graph.label_graph import LabelGraph
    from mlic.models import create_model

    with pytest.raises(ConfigError) as excinfo:
        create_model("mlgcn", 3, LabelGraph.placeholder(3, 8), backbone="resnet18", knobs={"hiden_dim": 3})
    assert excinfo.value.field == "models.mlgcn.hiden_dim"
