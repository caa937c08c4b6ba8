"""What the differences between a trained model's label queries are worth, on models already trained.

    python bench/distinct_queries.py --workdir /tmp/bench/work/data-seed-1 --archs msrn sgfn mgsgn cmasge

The quality bench measures this for every run it trains (its "mAP owed to distinct queries"
column); this reads models a pipeline or the bench has already saved under
`WORKDIR/artifacts/models/ARCH`, so a finding can be checked without training again. Each model
is scored on the test split three ways: with its own label queries; with every label asking its
attention with the mean of the queries (what is lost is all the label-specific part of the
queries is worth, however far apart they point); and with zero queries, every location weighed
alike (what is lost is what the attention as a whole is worth). Writes a Markdown table with the
command and date.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from mlic.config import Config, load_config
from mlic.data.canonical import load_labels
from mlic.evaluation.metrics import mean_average_precision
from mlic.models.diagnostics import eval_probabilities, mean_query, queries_replaced, zero_query
from mlic.models.saved import load_model
from mlic.paths import Paths
from mlic.steps.evaluate import split_dataset


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a pipeline root: data/prepared, artifacts/models")
    parser.add_argument("--archs", nargs="+", required=True, help="saved models to read (artifacts/models/ARCH)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the knobs 'as configured' means")
    parser.add_argument("--output", type=Path, default=Path("bench/results/distinct-queries.md"))
    return parser.parse_args(argv)


def departures(saved: dict[str, object], configured: dict[str, object]) -> str:
    """The saved model's knobs that differ from params.yaml's, or "none" (the model as configured)."""
    changed = [f"{knob}={value}" for knob, value in saved.items() if configured.get(knob) != value]
    return ", ".join(changed) or "none"


def model_row(paths: Paths, arch: str, config: Config) -> str:
    model, spec = load_model(paths.model_dir(arch))
    names = load_labels(paths.labels_file).names
    dataset = split_dataset(paths, "test", len(names), spec["image_size"], config)
    images = torch.stack([dataset[index][0] for index in range(len(dataset))])
    targets = dataset.targets().numpy()
    scores = {"own": eval_probabilities(model, images)}
    for name, replace in (("mean", mean_query), ("zero", zero_query)):
        with queries_replaced(model, replace) as has_queries:
            if not has_queries:
                return f"| {arch} | – | no label-guided attention | | | |"
            scores[name] = eval_probabilities(model, images)
    knobs = departures(spec["knobs"], config.models.model_dump(mode="json")[arch])
    own, mean, zero = (mean_average_precision(scores[name].numpy(), targets) for name in ("own", "mean", "zero"))
    return f"| {arch} | {knobs} | {own:.1f} | {mean:.1f} | {zero:.1f} | {own - mean:+.1f} |"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.now(UTC)
    command = shlex.join(["python", "bench/distinct_queries.py", *(sys.argv[1:] if argv is None else argv)])
    config = load_config(args.params)
    paths = Paths(args.workdir)
    lines = [
        "| model | knobs unlike params.yaml | test mAP: own queries | mean query | zero queries "
        "| owed to distinct queries |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for arch in args.archs:
        lines.append(model_row(paths, arch, config))
        print(lines[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        "# What distinct label queries are worth, on saved models\n\n"
        f"Command: `{command}`  \nDate: {started:%Y-%m-%d %H:%M} UTC\n\n"
        "Test mAP in % of each saved model with its own label queries, with every label asking its attention "
        "with the mean of the queries, and with zero queries (every location weighed alike). One trained model "
        "per row: a finding to check, not a mean over seeds (bench/quality.py's column is).\n\n"
        + "\n".join(lines)
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
