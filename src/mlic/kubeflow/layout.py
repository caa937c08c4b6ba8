"""Artifacts hold files at their project-layout paths, so a component can run a step unchanged.

A step reads and writes through `Paths(root)`. Each KFP artifact a component produces is a folder
holding the step's outputs at the same relative paths they have under a project root (the
prepared-data artifact holds `data/prepared/...`, a model `artifacts/models/<arch>/...`). A
component stages its input artifacts into a fresh temporary root, runs the step there, and copies
the outputs it declares into its output artifacts.

Staging mirrors folders and symlinks files: steps write into real folders (never into an upstream
artifact through a linked folder), and a large image set costs one link per file, not a copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mlic.data.canonical import SPLITS
from mlic.errors import PipelineError
from mlic.io import read_json, write_json
from mlic.paths import Paths


def link_tree(source: Path, root: Path) -> None:
    """Mirror `source`'s folders under `root` and symlink its files there (merging with others)."""
    source = source.resolve()
    if not source.is_dir():
        raise PipelineError(
            "input artifact is not a folder", file=source, fix="produce it with the matching mlic component"
        )
    for folder, _, files in os.walk(source):
        target_folder = root / Path(folder).relative_to(source)
        target_folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            target = target_folder / name
            if target.exists() or target.is_symlink():
                raise PipelineError(
                    "two input artifacts hold the same file",
                    file=target.relative_to(root),
                    fix="each artifact must hold distinct project paths; check the pipeline wiring",
                )
            target.symlink_to(Path(folder) / name)


def export(paths: Paths, outputs: Iterable[Path], artifact_dir: Path) -> None:
    """Copy step outputs (files or folders under `paths.root`) into `artifact_dir` at their relative paths.

    Links are followed: an output artifact must hold real files, not links into a temp root.
    """
    for output in outputs:
        relative = output.relative_to(paths.root)
        target = artifact_dir / relative
        if output.is_dir():
            shutil.copytree(output, target, dirs_exist_ok=True)
        elif output.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(output, target)
        else:
            raise PipelineError(
                "the step did not write an output the component exports",
                file=relative,
                fix="the step's contract changed: update mlic.kubeflow.tasks to match",
            )


@contextlib.contextmanager
def staged_root(*input_dirs: Path) -> Iterator[Paths]:
    """A temporary project root holding the given artifacts' files; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mlic-task-") as tmp:
        root = Path(tmp)
        for input_dir in input_dirs:
            link_tree(input_dir, root)
        yield Paths(root)


def make_portable(paths: Paths) -> int:
    """Copy images that prepared splits reference by absolute path into `data/prepared/images/`.

    `mlic prepare` leaves real datasets where they are (`info.image_root` absolute). In a pipeline
    that place is the prepare task's temp root, gone when the task ends: the prepared artifact must
    carry its images. Returns how many images were copied.
    """
    copied = 0
    for split in SPLITS:
        split_file = paths.split_file(split)
        payload = read_json(split_file, what="prepared split")
        image_root = Path(payload["info"]["image_root"])
        if not image_root.is_absolute():
            continue
        relative_root = Path("images") / split
        for image in payload["images"]:
            target = paths.prepared / relative_root / image["file_name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image_root / image["file_name"], target)
            copied += 1
        payload["info"]["image_root"] = relative_root.as_posix()
        write_json(split_file, payload)
    return copied
