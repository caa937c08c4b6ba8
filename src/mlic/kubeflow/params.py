"""Which part of params.yaml each pipeline task receives: the KFP twin of dvc.yaml's `params:`.

KFP decides a cache hit from a task's inputs. Handing every task the whole params.yaml would make
any change (say `evaluate.min_map`) re-run every task, training included; handing a task less
than it reads would hide a change from the cache. So each task gets exactly the sections its step
reads, as `mlic.steps.params` declares them (the same table dvc.yaml is checked against), and a
train task only its own architecture's knobs. A step that runs with a subset still builds a full
`Config`: the keys it does not read take their defaults.

Params travel as JSON *strings*, not dict parameters: KFP stores dict parameters as protobuf
Structs, which turn every number into a float (`hidden_dim: 1024` would reach the model as
1024.0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlic.config import Config, config_from_dict
from mlic.errors import PipelineError
from mlic.steps.params import STEP_PARAMS, step_params, subset

#: Pipeline parameter that carries params.yaml (as JSON).
PARAMS_PARAMETER = "params"

#: The steps that run once per pipeline run (train runs once per architecture, see `train_params`).
SINGLE_STEPS = tuple(step for step in STEP_PARAMS if step != "train")


@dataclass(frozen=True)
class StepParams:
    """The params JSON of every task of one run, each canonical (sorted keys) so equal means equal."""

    prepare: str
    validate: str
    graph: str
    evaluate: str
    package: str
    #: One `{"arch": name, "params": json}` per architecture, in params.yaml order.
    train: list[dict[str, str]]


def _canonical(raw: dict[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def parse_params(params_json: str, source: str = f"pipeline parameter '{PARAMS_PARAMETER}'") -> Config:
    """JSON text → validated Config; a broken or invalid value names the parameter and the key."""
    try:
        raw = json.loads(params_json)
    except json.JSONDecodeError as exc:
        raise PipelineError(
            f"not valid JSON ({exc})", file=source, fix="pass params.yaml as JSON (`mlic pipeline submit` does this)"
        ) from None
    if not isinstance(raw, dict):
        raise PipelineError("must be a JSON object of params.yaml sections", file=source, fix="see params.yaml")
    return config_from_dict(raw, source)


def train_params(config: Config, arch: str) -> str:
    """What `train --arch A` reads (mlic.steps.params): other models' knobs stay out."""
    return _canonical(subset(config.to_dict(), step_params("train", arch)))


def plan(params_json: str) -> StepParams:
    """Validate params once, up front, and cut them into the per-task subsets."""
    config = parse_params(params_json)
    full = config.to_dict()
    by_step = {step: _canonical(subset(full, step_params(step))) for step in SINGLE_STEPS}
    return StepParams(
        **by_step,
        train=[{"arch": arch, "params": train_params(config, arch)} for arch in config.architectures],
    )
