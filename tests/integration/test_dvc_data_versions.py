"""Data versions with the real DVC: `mlic data add | import`, a new version re-running the pipeline,
and `dvc metrics diff` / `dvc exp show` / `dvc plots show` across two commits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from annotation_fixtures import write_coco_2014
from dvc_project import TINY, commit, make_project, merge, run

pytestmark = pytest.mark.slow

#: One architecture is enough to see data flow through; COCO images are 20–40 px.
TINY_COCO = merge(json.loads(json.dumps(TINY)), {"architectures": ["baseline"], "data": {"split": {"val": 0.25}}})
#: The COCO 2014 protocol: train on the train file, report on the val file, val carved from train.
COCO_2014_OPTIONS = [
    "--source",
    "coco",
    "--annotations",
    "train=annotations/instances_train2014.json",
    "--annotations",
    "test=annotations/instances_val2014.json",
    "--images",
    "train=train2014",
    "--images",
    "test=val2014",
]
STAGES = {"prepare", "validate", "graph", "train@baseline", "evaluate", "package"}


def _ran(result: subprocess.CompletedProcess) -> set[str]:
    return {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage '")}


def _relabel_first_annotation(instances: Path) -> None:
    """A new data version: the first annotation now names another category."""
    payload = json.loads(instances.read_text())
    first = payload["annotations"][0]
    first["category_id"] = next(c["id"] for c in payload["categories"] if c["id"] != first["category_id"])
    instances.write_text(json.dumps(payload))


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """A project whose COCO set went through `mlic data add` and three versions, each `dvc repro`
    and committed: as added, one training annotation changed, one test annotation changed."""
    root = make_project(tmp_path_factory.mktemp("versions"), TINY_COCO)
    write_coco_2014(root / "data" / "raw" / "coco")
    added = run(["mlic", "data", "add", "data/raw/coco", *COCO_2014_OPTIONS], root)
    assert "data/raw/coco.dvc" in added.stdout
    repros = [run(["dvc", "repro"], root)]
    commit(root, "COCO v1")
    for changed in ("instances_train2014.json", "instances_val2014.json"):
        _relabel_first_annotation(root / "data/raw/coco/annotations" / changed)
        repros.append(run(["dvc", "repro"], root))
        commit(root, f"COCO v{len(repros)}")
    return root, repros


def test_data_add_writes_the_params_that_point_prepare_at_the_dataset(versioned: tuple) -> None:
    root, (first, *_) = versioned
    data = yaml.safe_load((root / "params.yaml").read_text())["data"]
    assert data["source"] == "coco"
    assert data["path"] == {
        "train": "data/raw/coco/annotations/instances_train2014.json",
        "test": "data/raw/coco/annotations/instances_val2014.json",
    }
    assert data["image_dir"] == {"train": "data/raw/coco/train2014", "test": "data/raw/coco/val2014"}
    assert _ran(first) == STAGES
    assert "is outside" not in first.stderr  # the dataset is under DVC: no warning


def test_a_new_data_version_reruns_prepare_and_everything_downstream(versioned: tuple) -> None:
    root, (_, train_changed, test_changed) = versioned
    assert _ran(train_changed) == STAGES
    assert _ran(test_changed) == STAGES - {"graph"}  # the label graph comes from the training split only
    assert "resumed at epoch 1" in test_changed.stdout  # the same training data: its finished checkpoint
    assert run(["dvc", "status"], root).stdout.strip() == "Data and pipelines are up to date."
    assert run(["git", "status", "--porcelain"], root).stdout == ""  # dvc.lock, .dvc, metrics/: all committed
    no_op = run(["dvc", "repro"], root)
    assert _ran(no_op) == set()


def test_metrics_diff_between_two_data_versions_shows_each_models_map(versioned: tuple) -> None:
    root, _ = versioned
    diff = run(["dvc", "metrics", "diff", "HEAD~1", "--all", "--json"], root)
    assert "failed to load" not in diff.stdout + diff.stderr
    changes = json.loads(diff.stdout)
    assert {"old", "new"} <= set(changes["metrics/evaluation.json"]["baseline.mAP"])
    assert changes["metrics/data.json"]["num_labels"] == {"old": 3, "new": 3, "diff": 0}
    trained = changes["metrics/train/baseline/metrics.json"]["val.mAP"]  # kept by a resumed, finished run
    assert trained["old"] is not None and trained["new"] == trained["old"]
    shown = run(["dvc", "metrics", "diff", "HEAD~1", "--all"], root)
    assert "failed to load" not in shown.stdout + shown.stderr and "metrics/train/baseline/metrics.json" in shown.stdout


def _columns(table: str) -> list[str]:
    return [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]


def test_exp_show_puts_the_models_map_before_data_counts(versioned: tuple) -> None:
    root, _ = versioned
    columns = _columns(run(["dvc", "exp", "show", "--md"], root).stdout)
    assert columns.index("baseline.mAP") < columns.index("num_labels")
    assert not any(name in column for column in columns for name in ("label_frequency", "boat", "cup"))
    # the README's view: one row per commit, the models' mAP only
    table = run(["dvc", "exp", "show", "--md", "-n", "2", "--drop", "^(?!Experiment$|Created$|.*mAP$)"], root).stdout
    assert _columns(table)[:2] == ["Experiment", "Created"] and "baseline.mAP" in _columns(table)
    assert all(column.endswith("mAP") for column in _columns(table)[2:])
    assert len([line for line in table.splitlines() if line.strip()]) == 5  # header, rule, workspace, two commits


def test_plots_render_offline(versioned: tuple) -> None:
    root, _ = versioned
    run(["dvc", "plots", "show", "-o", "plots_html"], root)
    html = (root / "plots_html" / "index.html").read_text()
    assert "<img" in html and "map_by_arch.png" in html
    assert "cdn." not in html and "https://" not in html


def test_a_folder_outside_the_repository_is_imported_with_its_origin(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", TINY_COCO)
    outside = write_coco_2014(tmp_path / "elsewhere" / "coco2014")
    run(["mlic", "data", "add", str(outside), "--name", "coco", *COCO_2014_OPTIONS], root)
    imported = yaml.safe_load((root / "data/raw/coco.dvc").read_text())
    assert imported["deps"][0]["path"] == str(outside)
    assert (root / "data/raw/coco/train2014").is_dir()
    commit(root, "COCO imported")
    _relabel_first_annotation(outside / "annotations/instances_train2014.json")
    run(["dvc", "update", "data/raw/coco.dvc"], root)  # the new version at the origin
    updated = yaml.safe_load((root / "data/raw/coco.dvc").read_text())
    assert (
        updated["deps"][0]["md5"] != imported["deps"][0]["md5"]
        and updated["outs"][0]["md5"] != imported["outs"][0]["md5"]
    )
    assert json.loads((root / "data/raw/coco/annotations/instances_train2014.json").read_text()) == json.loads(
        (outside / "annotations/instances_train2014.json").read_text()
    )


def _registry(folder: Path, remote: Path | None) -> Path:
    """A DVC data registry: the COCO 2014 set under coco/, committed and tagged v1; pushed to
    `remote` (its default remote) when given, else only in the registry's own cache."""
    folder.mkdir()
    run(["git", "init", "-q"], folder)
    run(["dvc", "init", "-q"], folder)
    if remote is not None:
        run(["dvc", "remote", "add", "-d", "storage", str(remote)], folder)
    write_coco_2014(folder / "coco")
    run(["dvc", "add", "coco"], folder)
    commit(folder, "COCO v1")
    run(["git", "tag", "v1"], folder)
    if remote is not None:
        run(["dvc", "push"], folder)
    return folder


def _changes(root: Path) -> str:
    """What git sees changed in the project: a failed add or import must leave nothing (no params.yaml
    edit, no data/raw/NAME, .dvc or .gitignore entry)."""
    return run(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout


def test_a_dataset_of_a_data_registry_is_imported_at_a_revision(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry", remote=tmp_path / "remote")
    root = make_project(tmp_path / "project", TINY_COCO)
    result = run(["mlic", "data", "import", str(registry), "coco", "--rev", "v1", *COCO_2014_OPTIONS], root)
    assert "dvc import" in result.stdout
    dvc_file = yaml.safe_load((root / "data/raw/coco.dvc").read_text())
    assert dvc_file["deps"][0]["repo"]["rev"] == "v1"
    assert (root / "data/raw/coco/annotations/instances_val2014.json").is_file()
    assert yaml.safe_load((root / "params.yaml").read_text())["data"]["source"] == "coco"


def test_a_dataset_inside_the_repository_but_outside_data_raw_is_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", TINY_COCO)
    write_coco_2014(root / "coco")
    result = run(["mlic", "data", "add", "coco", *COCO_2014_OPTIONS], root, check=False)
    assert (
        result.returncode == 3 and "outside data/raw/" in result.stderr and "move it to data/raw/coco" in result.stderr
    )
    assert not (root / "coco.dvc").exists()


def test_a_missing_dataset_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", TINY_COCO)
    missing = tmp_path / "datasets" / "coco2014"
    result = run(["mlic", "data", "add", str(missing), *COCO_2014_OPTIONS], root, check=False)
    assert result.returncode == 3 and f"{missing}: dataset not found" in result.stderr
    assert "give the folder holding the dataset" in result.stderr
    assert _changes(root) == ""


def test_a_revision_the_registry_lacks_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry", remote=tmp_path / "remote")
    root = make_project(tmp_path / "project", TINY_COCO)
    result = run(
        ["mlic", "data", "import", str(registry), "coco", "--rev", "v9", *COCO_2014_OPTIONS], root, check=False
    )
    assert result.returncode == 3
    assert f"{registry} [--rev]: the registry has no branch, tag or commit 'v9'" in result.stderr
    assert f"git ls-remote {registry}" in result.stderr
    assert _changes(root) == ""


@pytest.mark.parametrize(("path", "listing"), [("nosuch", ""), ("coco/nosuch", " coco")])
def test_a_path_the_registry_lacks_is_named_and_nothing_is_written(tmp_path: Path, path: str, listing: str) -> None:
    """DVC alone says "unexpected error - ['nosuch']"; a path inside a dataset DVC tracks is looked
    up in the dataset's listing."""
    registry = _registry(tmp_path / "registry", remote=tmp_path / "remote")
    root = make_project(tmp_path / "project", TINY_COCO)
    result = run(["mlic", "data", "import", str(registry), path, "--rev", "v1", *COCO_2014_OPTIONS], root, check=False)
    assert result.returncode == 3
    assert f"{registry} [PATH]: the registry has no {path!r} at v1" in result.stderr
    assert f"`dvc list {registry}{listing} --rev v1` lists them" in result.stderr
    assert _changes(root) == ""


def test_a_registry_url_with_credentials_is_never_printed_with_them(tmp_path: Path) -> None:
    """Nothing listens on port 1: the clone fails, and git's and DVC's messages name the URL."""
    root = make_project(tmp_path / "project", TINY_COCO)
    url = "http://mlic:s3cr3t@127.0.0.1:1/registry.git"
    result = run(["mlic", "data", "import", url, "coco", *COCO_2014_OPTIONS], root, check=False)
    shown = "http://***@127.0.0.1:1/registry.git"
    assert result.returncode == 3 and f"{shown}: the registry cannot be cloned" in result.stderr
    assert f"git ls-remote {shown}" in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    assert _changes(root) == ""


def test_another_dvc_failure_passes_dvcs_message_on_with_an_accurate_fix(tmp_path: Path) -> None:
    """A dataset committed to git cannot also be a DVC output: DVC's message says so, and the fix
    does not send a user already in a DVC project to `git init && dvc init`."""
    root = make_project(tmp_path / "project", TINY_COCO)
    write_coco_2014(root / "data" / "raw" / "coco")
    commit(root, "COCO in git")
    result = run(["mlic", "data", "add", "data/raw/coco", *COCO_2014_OPTIONS], root, check=False)
    assert result.returncode == 3 and "`dvc add data/raw/coco` failed:" in result.stderr
    assert "already tracked by SCM" in result.stderr
    assert "fix: DVC's message says what it refused; `dvc add data/raw/coco -v` prints its details" in result.stderr
    assert "git init" not in result.stderr and _changes(root) == ""


def test_a_registry_without_a_remote_says_what_to_configure(tmp_path: Path) -> None:
    """Its data is only in its own cache, which a clone of it (any URL) does not have."""
    url = _registry(tmp_path / "registry", remote=None).as_uri()
    root = make_project(tmp_path / "project", TINY_COCO)
    result = run(["mlic", "data", "import", url, "coco", "--rev", "v1", *COCO_2014_OPTIONS], root, check=False)
    assert result.returncode == 3
    assert f"{url}: the registry tracks coco at v1, but its data is in no DVC remote" in result.stderr
    assert "in the registry" in result.stderr and "dvc remote add -d" in result.stderr and "dvc push" in result.stderr
    assert _changes(root) == ""


def test_an_import_that_does_not_match_the_layout_is_removed_again(tmp_path: Path) -> None:
    """The registry's files are only seen once imported: a wrong --annotations undoes the import,
    so the corrected command runs under the same name."""
    registry = _registry(tmp_path / "registry", remote=tmp_path / "remote")
    root = make_project(tmp_path / "project", TINY_COCO)
    wrong = [option.replace("instances_val2014", "instances_test2014") for option in COCO_2014_OPTIONS]
    result = run(["mlic", "data", "import", str(registry), "coco", *wrong], root, check=False)
    assert result.returncode == 3 and "'annotations/instances_test2014.json' is not in the dataset" in result.stderr
    assert _changes(root) == "" and not (root / "data/raw/coco").exists()
    run(["mlic", "data", "import", str(registry), "coco", *COCO_2014_OPTIONS], root)
    assert (root / "data/raw/coco.dvc").is_file()


def test_a_params_file_that_cannot_take_the_keys_stops_before_dvc_runs(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", TINY_COCO)
    outside = write_coco_2014(tmp_path / "elsewhere" / "coco2014")
    result = run(["mlic", "data", "add", str(outside), *COCO_2014_OPTIONS, "--params", "nope.yaml"], root, check=False)
    assert result.returncode == 2 and "nope.yaml: parameters file not found" in result.stderr
    assert _changes(root) == ""
