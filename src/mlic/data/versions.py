"""Put a dataset under DVC in `data/raw/` and point `prepare` at it (`mlic data add | import`).

`data/raw/` is a dependency of the prepare stage (dvc.yaml), so a new version of anything in it
re-runs prepare and every stage after it — and nothing else. One fixed folder rather than a
dependency templated from `data.path`: it exists for every source (the synthetic benchmark has no
path; a path may be one file per split), and it also covers what `data.path` does not name (the
image folders, VOC's ImageSets).

Three ways in, each leaving `data/raw/NAME.dvc` for git:

* a folder already under `data/raw/` → `dvc add`;
* a folder outside the repository → `dvc import-url` (copied into the DVC cache and
  `data/raw/NAME`; the `.dvc` file remembers the origin and `dvc update` takes a new version of it);
* a dataset of a DVC data registry → `dvc import REPO PATH [--rev R]` (`dvc update --rev` moves it).

Then the params keys (`data.source`, `data.path`, `data.image_dir`) are written into params.yaml,
comments kept, and validated like any params file.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from mlic.config import config_from_dict
from mlic.errors import ConfigError, DataError
from mlic.io import write_text
from mlic.paths import Paths

#: A path inside the dataset, or one per split ({"train": ..., "test": ...}).
Located = str | dict[str, str]


@dataclass(frozen=True)
class Layout:
    """Where the parts of a dataset are, relative to the dataset's own folder."""

    source: str
    #: coco: the instances JSON (or one per split); voc: the VOC root ("." when it is the folder).
    annotations: Located
    #: coco: the image folder (or one per split); None for voc.
    images: Located | None = None


@dataclass(frozen=True)
class AddResult:
    target: Path
    dvc_file: Path
    command: list[str]
    params: dict[str, Any]

    def summary(self, root: Path) -> str:
        target, dvc_file = (os.path.relpath(path, root.resolve()) for path in (self.target, self.dvc_file))
        keys = ", ".join(f"data.{key}={value}" for key, value in self.params.items())
        return (
            f"{' '.join(self.command)}: {target} is under DVC ({dvc_file})\n"
            f"params.yaml: {keys}\n"
            f"next: git add {dvc_file} {os.path.join(os.path.dirname(dvc_file), '.gitignore')} params.yaml "
            "&& git commit, then `dvc repro`"
        )


def make_layout(source: str, annotations: Located | None, images: Located | None) -> Layout:
    """The layout options of `mlic data add|import`: coco needs both; voc's root defaults to the folder."""
    if source == "coco" and (annotations is None or images is None):
        raise ConfigError(
            "a COCO dataset needs --annotations and --images",
            field="--annotations" if annotations is None else "--images",
            fix="e.g. --annotations annotations/instances_train2017.json --images train2017",
        )
    if source == "voc" and images is not None:
        raise ConfigError(
            "VOC images are found from the VOC root (JPEGImages/)", field="--images", fix="leave --images out"
        )
    return Layout(source, annotations or ".", images)


def parse_located(values: list[str] | None, option: str) -> Located | None:
    """`--annotations a.json` → "a.json"; `--annotations train=a.json --annotations test=b.json` → per split."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    pairs = [value.split("=", 1) for value in values]
    if any(len(pair) != 2 or not pair[0] for pair in pairs):
        raise ConfigError(
            f"give one {option} PATH, or SPLIT=PATH for each split",
            field=option,
            fix=f"e.g. {option} train=a.json {option} test=b.json",
        )
    return {split: path for split, path in pairs}


def _dvc(root: Path, *args: str) -> list[str]:
    """Run a DVC command in the project; DataError with DVC's own message when it fails."""
    command = ["dvc", *args]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise DataError(
            f"`{' '.join(command)}` failed: {' '.join(message[-3:])}",
            file=root,
            fix="run it from a git + DVC repository (`git init && dvc init`) and check the dataset's location",
        )
    return command


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _free_target(paths: Paths, name: str) -> Path:
    target = paths.raw_data / name
    if target.exists() or target.with_name(f"{name}.dvc").exists():
        raise DataError(
            "a dataset of this name is already under data/raw/",
            file=target,
            fix="choose another --name, or take its new version with `dvc update` / `mlic data add` on it",
        )
    return target


def add(paths: Paths, dataset: Path, layout: Layout, params_file: Path, name: str | None = None) -> AddResult:
    """`dvc add` a folder under data/raw/, or `dvc import-url` one from outside the repository."""
    root = paths.root.resolve()
    dataset = dataset.resolve()
    if not dataset.exists():
        raise DataError("dataset not found", file=dataset, fix="give the folder holding the dataset")
    _check_layout(dataset, layout)  # before anything is copied
    if _within(dataset, paths.raw_data.resolve()) and dataset != paths.raw_data.resolve():
        target = dataset
        command = _dvc(root, "add", os.path.relpath(dataset, root))
    elif _within(dataset, root):
        raise DataError(
            "inside the repository but outside data/raw/, the folder the prepare stage depends on",
            file=dataset,
            fix=f"move it to data/raw/{dataset.name} and run `mlic data add data/raw/{dataset.name}`",
        )
    else:
        target = _free_target(paths, name or dataset.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        command = _dvc(root, "import-url", str(dataset), os.path.relpath(target, root))
    return _point_prepare(paths, target, layout, params_file, command)


def import_from_registry(
    paths: Paths,
    repo: str,
    path: str,
    layout: Layout,
    params_file: Path,
    rev: str | None = None,
    name: str | None = None,
) -> AddResult:
    """`dvc import REPO PATH -o data/raw/NAME [--rev R]`: a dataset version of a DVC data registry."""
    target = _free_target(paths, name or Path(path).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ["import", repo, path, "-o", os.path.relpath(target, paths.root.resolve())] + (["--rev", rev] if rev else [])
    command = _dvc(paths.root.resolve(), *args)
    _check_layout(target, layout)
    return _point_prepare(paths, target, layout, params_file, command)


def _each(located: Located | None) -> list[str]:
    return [] if located is None else [located] if isinstance(located, str) else list(located.values())


def _check_layout(folder: Path, layout: Layout) -> None:
    """Every path the layout names is in the dataset folder."""
    for option, located in (("--annotations", layout.annotations), ("--images", layout.images)):
        for value in _each(located):
            if not (folder / value).exists():
                raise DataError(
                    f"{value!r} is not in the dataset",
                    file=folder / value,
                    field=option,
                    fix=f"give {option} relative to {folder}",
                )


def _in_project(paths: Paths, target: Path, located: Located | None) -> Located | None:
    """Paths inside the dataset as params.yaml holds them: relative to the project root."""

    def relative(value: str) -> str:
        return os.path.relpath((target / value).resolve(), paths.root.resolve())

    if located is None or isinstance(located, str):
        return None if located is None else relative(located)
    return {split: relative(value) for split, value in located.items()}


def _point_prepare(paths: Paths, target: Path, layout: Layout, params_file: Path, command: list[str]) -> AddResult:
    keys = {
        "source": layout.source,
        "path": _in_project(paths, target, layout.annotations),
        "image_dir": _in_project(paths, target, layout.images),
    }
    write_data_params(params_file, keys)
    return AddResult(target, target.with_name(f"{target.name}.dvc"), command, keys)


def _yaml_value(value: Located | None) -> Any:
    """Per-split paths as a flow mapping ({train: ..., test: ...}), like the rest of params.yaml."""
    if isinstance(value, dict):
        mapping = CommentedMap(value)
        mapping.fa.set_flow_style()
        return mapping
    return value


def write_data_params(params_file: Path, keys: dict[str, Any]) -> None:
    """Set data.<key> in params.yaml, keeping its comments; the result must validate first."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # keep long comment lines as they are
    if not params_file.is_file():
        raise ConfigError(
            "parameters file not found", file=params_file, fix="run from the project root or pass --params"
        )
    document = yaml.load(params_file.read_text(encoding="utf-8")) or CommentedMap()
    data = document.setdefault("data", CommentedMap())
    for key, value in keys.items():
        data[key] = _yaml_value(value)
    config_from_dict(_plain(document), str(params_file))
    text = io.StringIO()
    yaml.dump(document, text)
    write_text(params_file, text.getvalue())


def _plain(node: Any) -> Any:
    """ruamel's round-trip nodes as plain dicts/lists, for validation."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node
