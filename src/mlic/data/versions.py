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
comments kept. They are validated like any params file before DVC runs, and a failure of DVC or of
the layout check leaves params.yaml, data/raw/ and its .dvc files as they were. A registry URL that
carries credentials is printed without them (`mlic.urls.redact`), in errors and summaries alike.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import posixpath
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from mlic.config import config_from_dict
from mlic.errors import ConfigError, DataError
from mlic.io import write_text
from mlic.paths import Paths
from mlic.urls import redact

log = logging.getLogger(__name__)

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
        """What was done and what to commit, the command's URL without credentials; the .dvc file
        DVC wrote keeps them (it records the URL as given), which git must not get."""
        target, dvc_file = (os.path.relpath(path, root.resolve()) for path in (self.target, self.dvc_file))
        keys = ", ".join(f"data.{key}={value}" for key, value in self.params.items())
        command = " ".join(self.command)
        credentials = (
            f"warning: {dvc_file} holds the URL with its credentials: delete them from its `url:` before "
            "committing it, and give them to git through a credential helper instead\n"
            if redact(command) != command
            else ""
        )
        return (
            f"{redact(command)}: {target} is under DVC ({dvc_file})\n"
            f"params.yaml: {keys}\n{credentials}"
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


def _unexplained(output: str) -> DataError | None:
    return None


def _dvc(root: Path, *args: str, explain: Callable[[str], DataError | None] = _unexplained) -> list[str]:
    """Run a DVC command in the project; when it fails, `explain`'s DataError for a failure it
    recognises (DVC's own message for those is an internal one), else one with DVC's message: the
    project is known to be a DVC one by then (`_dvc_project`), so that message is all we know."""
    command = ["dvc", *args]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        shown = redact(" ".join(command))
        raise explain(output) or DataError(
            f"`{shown}` failed: {redact(_dvc_message(output))}",
            file=root,
            fix=f"DVC's message says what it refused; `{shown} -v` prints its details",
        )
    return command


def _dvc_message(output: str) -> str:
    """DVC's error on one line: from its `ERROR:` line on (what comes before is progress), without
    the support footer. Its first line says what is wrong; the lines after it, how to fix it."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("ERROR:")), max(len(lines) - 3, 0))
    kept = [line for line in lines[start:] if not line.startswith("Having any troubles?")]
    return " ".join(kept).removeprefix("ERROR:").strip()


def _dvc_project(paths: Paths) -> Path:
    """The project root, once it is known to hold a DVC project: DVC's own error elsewhere ('you are
    not inside of a DVC repository') does not say which folder it looked in."""
    root = paths.root.resolve()
    if not (root / ".dvc").is_dir():
        raise DataError(
            "not a DVC project (no .dvc/ folder)",
            file=root,
            fix="run from the project root or pass --root; a new project needs `git init && dvc init` first",
        )
    return root


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
    dataset = dataset.resolve()
    if not dataset.exists():
        raise DataError("dataset not found", file=dataset, fix="give the folder holding the dataset")
    _check_layout(dataset, layout)  # before anything is copied
    root = _dvc_project(paths)
    if _within(dataset, paths.raw_data.resolve()) and dataset != paths.raw_data.resolve():
        target, args = dataset, ["add", os.path.relpath(dataset, root)]
    elif _within(dataset, root):
        raise DataError(
            "inside the repository but outside data/raw/, the folder the prepare stage depends on",
            file=dataset,
            fix=f"move it to data/raw/{dataset.name} and run `mlic data add data/raw/{dataset.name}`",
        )
    else:
        target = _free_target(paths, name or dataset.name)
        args = ["import-url", str(dataset), os.path.relpath(target, root)]
    plan = _plan(paths, target, layout, params_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    return plan.finish(_dvc(root, *args))


def import_from_registry(
    paths: Paths,
    repo: str,
    path: str,
    layout: Layout,
    params_file: Path,
    rev: str | None = None,
    name: str | None = None,
) -> AddResult:
    """`dvc import REPO PATH -o data/raw/NAME [--rev R]`: a dataset version of a DVC data registry.

    The registry's files are only known once imported: an import whose layout they do not match is
    removed again (`dvc remove --outs`), so the corrected command can run under the same name.
    """
    root = _dvc_project(paths)
    target = _free_target(paths, name or Path(path).name)
    plan = _plan(paths, target, layout, params_file)
    _check_registry(repo, path, rev)
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ["import", repo, path, "-o", os.path.relpath(target, root)] + (["--rev", rev] if rev else [])
    command = _dvc(root, *args, explain=functools.partial(_import_failure, repo, path, rev))
    try:
        _check_layout(target, layout)
    except DataError:
        _dvc(root, "remove", "--outs", os.path.relpath(plan.dvc_file, root))
        raise
    return plan.finish(command)


def _check_registry(repo: str, path: str, rev: str | None) -> None:
    """Stop before `dvc import` when the registry cannot be cloned, lacks `rev` or lacks `path`:
    DVC's own errors for these are internal ones ('SCM error', "unexpected error - ['nosuch']").

    Asked of DVC's file system of the registry, opened as `dvc import` opens it, so the answer is
    DVC's own exception, not a message parsed. What it cannot tell (a path inside a dataset whose
    data is in no reachable remote) is left to `dvc import`, which reports it. DVC's clones of the
    registry are removed again.
    """
    from dvc.api import DVCFileSystem
    from dvc.repo.open_repo import clean_repos
    from dvc.scm import CloneError, RevError

    shown = redact(repo)
    try:
        DVCFileSystem(repo, rev=rev, subrepos=True).info(path)
    except CloneError:
        raise DataError(
            "the registry cannot be cloned from here",
            file=shown,
            fix=f"`git ls-remote {shown}` shows git's reason (URL, network, access); "
            "credentials belong in a git credential helper, not in the URL",
        ) from None
    except RevError:
        raise DataError(
            f"the registry has no branch, tag or commit {rev!r}",
            file=shown,
            field="--rev",
            fix=f"give one it has (`git ls-remote {shown}` lists its branches and tags), or leave --rev out",
        ) from None
    except FileNotFoundError:
        parent = posixpath.dirname(path.strip("/"))
        listing = ["dvc list", shown, *([parent] if parent else []), *(["--rev", rev] if rev else [])]
        raise DataError(
            f"the registry has no {path!r}" + (f" at {rev}" if rev else ""),
            file=shown,
            field="PATH",
            fix=f"give a path it has: `{' '.join(listing)}` lists them",
        ) from None
    except Exception as error:  # cannot tell from here: `dvc import` tries and reports it
        log.debug("%s was not looked up in %s before importing: %s", path, shown, redact(repr(error)))
    finally:
        clean_repos()


def _import_failure(repo: str, path: str, rev: str | None, output: str) -> DataError | None:
    """The `dvc import` failures a user causes and can fix, in their terms (DVC reports the missing
    data as an internal 'unexpected error' about a cache or remote file)."""
    if "No storage files available" in output or "failed to load directory" in output:
        tracked = f"{path} at {rev}" if rev else path
        return DataError(
            f"the registry tracks {tracked}, but its data is in no DVC remote "
            "(nor cache) that can be reached from here",
            file=redact(repo),
            fix="in the registry, configure a default remote and push the data to it: "
            "`dvc remote add -d storage URL`, commit .dvc/config, then `dvc push` "
            "(with a remote already set, `dvc push` is enough)",
        )
    return None


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


@dataclass(frozen=True)
class _Plan:
    """What `add`/`import` write into params.yaml once DVC has the data; made (and validated)
    before DVC runs, so a params file that cannot take the keys stops them with nothing done."""

    target: Path
    params_file: Path
    keys: dict[str, Any]
    params_text: str

    @property
    def dvc_file(self) -> Path:
        return self.target.with_name(f"{self.target.name}.dvc")

    def finish(self, command: list[str]) -> AddResult:
        write_text(self.params_file, self.params_text)
        return AddResult(self.target, self.dvc_file, command, self.keys)


def _plan(paths: Paths, target: Path, layout: Layout, params_file: Path) -> _Plan:
    keys = {
        "source": layout.source,
        "path": _in_project(paths, target, layout.annotations),
        "image_dir": _in_project(paths, target, layout.images),
    }
    return _Plan(target, params_file, keys, data_params_text(params_file, keys))


def _yaml_value(value: Located | None) -> Any:
    """Per-split paths as a flow mapping ({train: ..., test: ...}), like the rest of params.yaml."""
    if isinstance(value, dict):
        mapping = CommentedMap(value)
        mapping.fa.set_flow_style()
        return mapping
    return value


def data_params_text(params_file: Path, keys: dict[str, Any]) -> str:
    """params.yaml's text with data.<key> set, comments kept; ConfigError unless it validates."""
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
    return text.getvalue()


def _plain(node: Any) -> Any:
    """ruamel's round-trip nodes as plain dicts/lists, for validation."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node
