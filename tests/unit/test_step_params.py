"""One source of truth for what each step reads: dvc.yaml and the Kubeflow tasks follow
mlic.steps.params, and running the steps reads nothing it does not declare."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from prepared_data import tiny_params
from pydantic import BaseModel

from mlic.config import Config, config_from_dict, load_config
from mlic.kubeflow.params import plan
from mlic.paths import Paths
from mlic.steps.params import STEP_PARAMS, declares, step_params

PROJECT = Path(__file__).resolve().parents[2]


def test_dvc_stages_declare_exactly_the_keys_of_the_table() -> None:
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    declared = {name: stage.get("params") or stage.get("do", {}).get("params") for name, stage in stages.items()}
    expected = {step: [key.replace("{arch}", "${item}") for key in keys] for step, keys in STEP_PARAMS.items()}
    assert {name: sorted(keys) for name, keys in declared.items()} == {
        name: sorted(keys) for name, keys in expected.items()
    }


def _leaves(tree: dict, prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_each_kubeflow_task_gets_the_keys_of_the_table_and_no_more() -> None:
    config = load_config(PROJECT / "params.yaml")
    steps = plan(json.dumps(config.to_dict()))
    for step in ("prepare", "validate", "graph", "evaluate", "package"):
        handed = set(_leaves(json.loads(getattr(steps, step))))
        assert handed and all(declares(step_params(step), key) for key in handed), step
    for run in steps.train:
        handed = set(_leaves(json.loads(run["params"])))
        assert all(declares(step_params("train", run["arch"]), key) for key in handed), run["arch"]
        assert any(key.startswith(f"models.{run['arch']}.") for key in handed)


@contextmanager
def recorded_reads(config: Config) -> Iterator[set[str]]:
    """Every leaf key of `config` that code reads while the block runs, as `section.key` (fields
    read through `model_dump`, such as a fingerprint of a whole section, are not seen)."""
    prefixes: dict[int, str] = {}

    def index(model: BaseModel, prefix: str) -> None:
        prefixes[id(model)] = prefix
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                index(value, f"{prefix}{field.alias or name}.")

    index(config, "")
    reads: set[str] = set()
    original = BaseModel.__getattribute__

    def recording(self: BaseModel, name: str) -> object:
        value = original(self, name)
        if not name.startswith("_") and id(self) in prefixes:
            field = type(self).model_fields.get(name)
            if field is not None and not isinstance(value, BaseModel):
                reads.add(prefixes[id(self)] + (field.alias or name))
        return value

    BaseModel.__getattribute__ = recording  # undone below
    try:
        yield reads
    finally:
        BaseModel.__getattribute__ = original


@pytest.mark.slow
def test_no_step_reads_a_key_its_stage_does_not_declare(tmp_path: Path) -> None:
    """prepare → package on a tiny synthetic set, each step's reads recorded."""
    from mlic.steps import evaluate, graph, package, prepare, train, validate

    raw = tiny_params(
        tmp_path,
        data={"synthetic": {"num_images": 60, "image_size": 32, "min_objects": 1, "max_objects": 2}},
        validate={"min_positives": 1},
    )
    raw["architectures"], raw["graph"] = ["baseline"], {}
    config, paths = config_from_dict(raw), Paths(tmp_path)
    steps: list[tuple[str, tuple[str, ...], Callable[[], object]]] = [
        ("prepare", step_params("prepare"), lambda: prepare.run(config, paths)),
        ("validate", step_params("validate"), lambda: validate.run(config, paths)),
        ("graph", step_params("graph"), lambda: graph.run(config, paths)),
        ("train", step_params("train", "baseline"), lambda: train.run(config, paths, "baseline")),
        ("evaluate", step_params("evaluate"), lambda: evaluate.run(config, paths)),
        ("package", step_params("package"), lambda: package.run(config, paths)),
    ]
    for step, declared, run_step in steps:
        with recorded_reads(config) as reads:
            run_step()
        assert reads, f"{step} read nothing: the recorder is broken"
        undeclared = sorted(read for read in reads if not declares(declared, read))
        assert not undeclared, f"{step} reads {undeclared}, which mlic.steps.params does not declare"
