"""The data-fetch components for real: a git repo with DVC-tracked COCO data and a local DVC remote.

The components run through kfp.local (SubprocessRunner, this environment), as in the pipeline.
No `from __future__ import annotations`: kfp reads the test pipeline's annotations as real types.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl, local
from PIL import Image

from mlic.data.canonical import SPLITS, load_split
from mlic.errors import PipelineError
from mlic.kubeflow import fetch, tasks
from mlic.kubeflow.components import Components, build_components

ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "mlic test",
    "GIT_AUTHOR_EMAIL": "test@mlic.invalid",
    "GIT_COMMITTER_NAME": "mlic test",
    "GIT_COMMITTER_EMAIL": "test@mlic.invalid",
}
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "boat"}]
NUM_IMAGES = 20


def run(*command: str, cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def dvc(*args: str, cwd: Path) -> str:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def write_coco(root: Path, version: str) -> None:
    """A tiny COCO set: NUM_IMAGES small PNGs, each with one or two of three categories."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(NUM_IMAGES):
        name = f"{index:03d}.png"
        Image.new("RGB", (24, 16), (index * 12, 255 - index * 12, 80)).save(images_dir / name)
        images.append({"id": 100 + index, "file_name": name, "width": 24, "height": 16})
        for category in {CATEGORIES[index % 3]["id"], CATEGORIES[(index // 3) % 3]["id"]}:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": 100 + index, "category_id": category, "bbox": [1, 1, 8, 8]}
            )
    payload = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "instances.json").write_text(json.dumps(payload), encoding="utf-8")
    (root / "VERSION").write_text(version, encoding="utf-8")


def commit_data(repo: Path, version: str) -> str:
    write_coco(repo / "data" / "raw" / "coco", version)
    dvc("add", "data/raw", cwd=repo)
    dvc("push", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", f"data {version}", cwd=repo)
    return run("git", "rev-parse", "HEAD", cwd=repo)


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A data repo with two versions of the data (tag v1 on the first) and its DVC remote."""
    base = tmp_path_factory.mktemp("data-repo")
    repo, remote = base / "repo", base / "remote"
    repo.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("remote", "add", "-d", "local", str(remote), cwd=repo)
    first = commit_data(repo, "v1")
    run("git", "tag", "-a", "v1", "-m", "first data version", cwd=repo)
    second = commit_data(repo, "v2")
    return repo, [first, second]


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> Components:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path_factory.mktemp("kfp")))
    return build_components("python:3.11-slim")


def test_revisions_resolve_to_the_commit_they_point_at_now(
    data_repo: tuple[Path, list[str]], components: Components
) -> None:
    repo, (first, second) = data_repo
    assert components.resolve_data_revision(repo_url=str(repo), rev="main").output == second
    assert components.resolve_data_revision(repo_url=str(repo), rev="").output == second  # the default branch
    assert fetch.resolve_revision(str(repo), "v1") == first  # an annotated tag: the commit, not the tag object
    assert fetch.resolve_revision(str(repo), first) == first
    assert fetch.resolve_revision("", "main") == ""  # no repo: the built-in synthetic data
    with pytest.raises(PipelineError, match="revision 'v9' not found") as error:
        fetch.resolve_revision(str(repo), "v9")
    assert error.value.field == "data_rev"


def test_fetch_gets_the_data_of_the_pinned_commit(data_repo: tuple[Path, list[str]], components: Components) -> None:
    repo, (first, second) = data_repo
    for commit, version in ((first, "v1"), (second, "v2")):
        data = components.fetch_data(repo_url=str(repo), commit=commit, path="data/raw").outputs["data"]
        folder = Path(data.path)
        assert (folder / "data" / "raw" / "coco" / "VERSION").read_text() == version
        assert len(list((folder / "data" / "raw" / "coco" / "images").iterdir())) == NUM_IMAGES
        assert data.metadata["commit"] == commit
        assert json.loads((folder / tasks.FETCH_MANIFEST).read_text())["commit"] == commit


def test_fetch_names_a_path_the_repo_does_not_track(data_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, (_, second) = data_repo
    with pytest.raises(PipelineError, match="dvc get") as error:
        fetch.fetch(str(repo), second, "data/missing", tmp_path)
    assert "data_path" in str(error.value)


def test_prepared_fetched_data_carry_their_images(data_repo: tuple[Path, list[str]], components: Components) -> None:
    """COCO images stay where they are for `mlic prepare`; the pipeline's prepared data must hold them."""
    repo, (_, second) = data_repo
    params = {
        "data": {
            "source": "coco",
            "path": "data/raw/coco/instances.json",
            "image_dir": "data/raw/coco/images",
            "split": {"val": 0.2, "test": 0.2},
        }
    }

    @dsl.pipeline(name="fetch-and-prepare")
    def fetch_and_prepare(repo_url: str, commit: str, params: str) -> dsl.Dataset:
        fetched = components.fetch_data(repo_url=repo_url, commit=commit, path="data/raw")
        return components.prepare(params=params, raw_data=fetched.outputs["data"]).outputs["prepared"]

    prepared = fetch_and_prepare(repo_url=str(repo), commit=second, params=json.dumps(params)).output
    prepared_dir = Path(prepared.path) / "data" / "prepared"
    records = 0
    for split in SPLITS:
        loaded = load_split(prepared_dir / f"{split}.json")
        assert loaded.image_root == (prepared_dir / "images" / split).resolve()
        assert all(loaded.image_path(record).is_file() for record in loaded.records)
        records += len(loaded.records)
    assert records == NUM_IMAGES
    assert prepared.metadata["source"] == "coco"


def test_a_real_dataset_without_a_data_repo_is_refused(tmp_path: Path) -> None:
    raw_data = dsl.Dataset(uri=str(tmp_path / "raw"))
    tasks.fetch_data("", "", "data/raw", raw_data)
    params = json.dumps({"data": {"source": "voc", "path": "data/raw/VOC2007"}})
    with pytest.raises(PipelineError, match="fetched no data") as error:
        tasks.prepare(params, raw_data, dsl.Dataset(uri=str(tmp_path / "prepared")))
    assert error.value.field == "data_repo_url"
