"""`mlic data add | import`: a dataset under DVC in data/raw/, and params.yaml pointing prepare at it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlic.cli_common import ParamsOption, RootOption, guarded

if TYPE_CHECKING:
    from mlic.data.versions import Layout

data_app = typer.Typer(no_args_is_help=True, add_completion=False)

SourceOption = Annotated[str, typer.Option("--source", help="Dataset format: coco | voc.")]
AnnotationsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--annotations",
        help="coco: the instances JSON, or SPLIT=FILE per split (train=..., test=...); voc: the VOC root "
        "(default: the dataset folder). Relative to the dataset folder.",
    ),
]
ImagesOption = Annotated[
    list[str] | None,
    typer.Option("--images", help="coco: the image folder, or SPLIT=FOLDER per split. Relative to the dataset folder."),
]
NameOption = Annotated[str | None, typer.Option("--name", help="Folder name under data/raw/ (default: the dataset's).")]


def _layout(source: str, annotations: list[str] | None, images: list[str] | None) -> Layout:
    from mlic.data import versions
    from mlic.errors import ConfigError

    if source not in ("coco", "voc"):
        raise ConfigError(f"unknown source {source!r}", field="--source", fix="use coco or voc")
    return versions.make_layout(
        source, versions.parse_located(annotations, "--annotations"), versions.parse_located(images, "--images")
    )


@data_app.command("add")
def add(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="The dataset folder: under data/raw/ (dvc add) or outside the repository (dvc import-url)."
        ),
    ],
    source: SourceOption,
    annotations: AnnotationsOption = None,
    images: ImagesOption = None,
    name: NameOption = None,
    params: ParamsOption = Path("params.yaml"),
    root: RootOption = Path("."),
) -> None:
    """Put a dataset under DVC in data/raw/ and point params.yaml's data keys at it."""

    def body() -> str:
        from mlic.data import versions
        from mlic.paths import Paths

        result = versions.add(Paths(root), dataset, _layout(source, annotations, images), params, name)
        return result.summary(root)

    typer.echo(guarded(body))


@data_app.command("import")
def import_(
    repo: Annotated[
        str, typer.Argument(help="URL or path of a git repository whose data DVC tracks (a data registry).")
    ],
    path: Annotated[str, typer.Argument(help="The dataset's path in that repository, e.g. data/coco.")],
    source: SourceOption,
    rev: Annotated[str | None, typer.Option("--rev", help="Branch, tag or commit of the registry.")] = None,
    annotations: AnnotationsOption = None,
    images: ImagesOption = None,
    name: NameOption = None,
    params: ParamsOption = Path("params.yaml"),
    root: RootOption = Path("."),
) -> None:
    """`dvc import` a dataset version of a data registry into data/raw/ and point params.yaml at it."""

    def body() -> str:
        from mlic.data import versions
        from mlic.paths import Paths

        layout = _layout(source, annotations, images)
        return versions.import_from_registry(Paths(root), repo, path, layout, params, rev, name).summary(root)

    typer.echo(guarded(body))


@data_app.command("generate")
def generate(
    folder: Annotated[
        Path, typer.Argument(help="The dataset folder to write (replaced whole), e.g. data/raw/benchmark.")
    ],
    missing_labels: Annotated[
        float,
        typer.Option(help="Fraction of the annotations left out, as an annotator who missed objects would (0–1)."),
    ] = 0.0,
    images: Annotated[
        int | None, typer.Option(min=30, help="Number of images (default: data.synthetic.num_images).")
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Write the built-in benchmark as a COCO dataset (instances.json, images/): a data version to add."""

    def body() -> str:
        from mlic.config import load_config
        from mlic.data.generate import generate

        config = load_config(params)
        settings = config.data.synthetic
        if images is not None:
            settings = settings.model_copy(update={"num_images": images})
        return generate(folder, settings, config.data.seed, missing_labels).summary()

    typer.echo(guarded(body))
