"""Test-set quality of every architecture on the embedded benchmark, over several training seeds.

    python bench/quality.py                                  # params.yaml's architectures, seeds 0 1 2
    python bench/quality.py --archs baseline cmasge --seeds 0 1 --epochs 4
    python bench/quality.py --set train.lr=0.0003 --workdir /tmp/mlic-quality

One model's test mAP on a few hundred synthetic images moves by a point or two with the training
seed alone, so a single run cannot say whether a graph model beats the baseline: this trains
every (architecture, seed) pair and reports the mean and spread. Only `train.seed` changes
between runs; `data.seed` stays fixed, so every run sees the same images and splits.

It drives the pipeline's own steps (`mlic.steps.*` with `load_config` + `Paths(workdir)`):
prepare, validate and graph once, then train and evaluate per pair, each from scratch (the
arch's checkpoint is removed first, so no run resumes another). The workdir holds the data and
models, away from the project's own `data/` and `artifacts/`. The table is printed and written to
`bench/results/quality.md` with the exact command and date, every run beside it in `quality.json`.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from mlic.data.synthetic import LOOK_ALIKE_GROUPS

from mlic.config import Config, load_config
from mlic.data.canonical import load_labels
from mlic.io import write_json
from mlic.models.diagnostics import probe_label_attention
from mlic.models.saved import load_model
from mlic.paths import Paths
from mlic.steps import graph, prepare, train, validate
from mlic.steps.evaluate import evaluate_arch, split_dataset

REFERENCE = "baseline"
TARGET_MARGIN = 3.0  # the best graph model should beat the baseline by this many mAP points
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "quality.md"


@dataclass(frozen=True)
class Run:
    """One trained and evaluated (architecture, seed) pair; metrics in percent."""

    arch: str
    seed: int
    mAP: float
    CF1: float
    OF1: float
    #: Mean AP over the benchmark's look-alike categories (one sprite, told apart only by their
    #: companions): the part of mAP that needs context. NaN on other data.
    look_alike_AP: float
    parameters: int
    seconds_per_epoch: float
    #: Mean cosine between the label queries of its label-guided attention (1.0: every label
    #: attends to the same places); NaN for models without one.
    label_query_cosine: float
    #: Entropy of each label's attention weights as a fraction of the uniform one (0: each label
    #: reads one location); NaN for models without label-guided attention.
    attention_entropy: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the parameters file")
    parser.add_argument("--archs", nargs="+", help="default: `architectures` from the parameters")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="values of train.seed")
    parser.add_argument("--epochs", type=int, help="default: train.epochs from the parameters")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter, as `mlic --set` (repeatable)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".mlic/bench-quality"), help="where data and models are written"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="the markdown report")
    return parser.parse_args(argv)


def base_overrides(args: argparse.Namespace) -> list[str]:
    """The user's overrides, plus the architecture list and epochs the flags ask for."""
    overrides = list(args.overrides)
    if args.archs:
        overrides.append(f"architectures=[{','.join(args.archs)}]")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    return overrides


def ordered_archs(config: Config) -> list[str]:
    """The reference first, so every row below it reads as a comparison with it."""
    archs = list(config.architectures)
    return [REFERENCE, *(a for a in archs if a != REFERENCE)] if REFERENCE in archs else archs


def prepare_once(config: Config, paths: Paths) -> None:
    """Data, its validation and the label graph depend on data/graph settings only, not the seed."""
    for step in (prepare, validate, graph):
        started = time.perf_counter()
        step.run(config, paths)
        print(f"{step.__name__.rsplit('.', 1)[-1]}: done in {time.perf_counter() - started:.1f} s", flush=True)


def train_and_evaluate(config: Config, paths: Paths, arch: str, seed: int) -> Run:
    shutil.rmtree(paths.checkpoint_file(arch).parent, ignore_errors=True)
    result = train.run(config, paths, arch)
    if result is None:  # only under torchrun, on ranks other than 0
        raise SystemExit("bench/quality.py runs in one process: do not start it under torchrun")
    names = load_labels(paths.labels_file).names
    evaluation = evaluate_arch(arch, config, paths, names)
    metrics = evaluation.metrics
    model, spec = load_model(paths.model_dir(arch))
    attention = probe_label_attention(model, first_test_images(config, paths, len(names), spec["image_size"]))
    return Run(
        arch=arch, seed=seed, mAP=metrics["mAP"], CF1=metrics["CF1"], OF1=metrics["OF1"],
        look_alike_AP=look_alike_ap(config, names, evaluation.per_class_ap),
        parameters=sum(p.numel() for p in model.parameters()), seconds_per_epoch=result.seconds_per_epoch,
        label_query_cosine=float("nan") if attention is None else attention.query_cosine,
        attention_entropy=float("nan") if attention is None else attention.entropy,
    )


def first_test_images(config: Config, paths: Paths, num_classes: int, image_size: int, count: int = 8) -> torch.Tensor:
    """The first test images, as evaluation sees them: MGSGN's label queries depend on the image."""
    dataset = split_dataset(paths, "test", num_classes, image_size, config)
    return torch.stack([dataset[index][0] for index in range(min(count, len(dataset)))])


def look_alike_ap(config: Config, names: list[str], per_class_ap: np.ndarray) -> float:
    if config.data.source != "synthetic":
        return float("nan")
    look_alikes = [names.index(name) for group in LOOK_ALIKE_GROUPS for name in group]
    return float(np.nanmean(per_class_ap[look_alikes]))


def attention_figure(values: list[float]) -> str:
    """Mean over seeds of a label-attention figure, or a dash for a model without that attention."""
    finite = [value for value in values if np.isfinite(value)]
    return f"{np.mean(finite):.2f}" if finite else "–"


def spread(values: list[float]) -> str:
    """Mean ± sample standard deviation (the ± is left out for a single seed)."""
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def table(runs: list[Run], archs: list[str]) -> str:
    lines = [
        "| arch | mAP (mean ± std) | Δ mAP vs baseline | mAP per seed | look-alike AP | CF1 | OF1 | label-query cos "
        "| attention entropy | params (M) | train s/epoch |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = [r.mAP for r in runs if r.arch == REFERENCE]
    for arch in archs:
        mine = [r for r in runs if r.arch == arch]
        maps = [r.mAP for r in mine]
        delta = f"{np.mean(maps) - np.mean(reference):+.1f}" if reference and arch != REFERENCE else "–"
        lines.append(
            f"| {arch} | {spread(maps)} | {delta} | {' / '.join(f'{m:.1f}' for m in maps)} "
            f"| {np.mean([r.look_alike_AP for r in mine]):.1f} "
            f"| {np.mean([r.CF1 for r in mine]):.1f} | {np.mean([r.OF1 for r in mine]):.1f} "
            f"| {attention_figure([r.label_query_cosine for r in mine])} "
            f"| {attention_figure([r.attention_entropy for r in mine])} | {mine[0].parameters / 1e6:.2f} "
            f"| {np.mean([r.seconds_per_epoch for r in mine]):.1f} |"
        )
    return "\n".join(lines)


def verdict(runs: list[Run], archs: list[str]) -> str:
    """The issue's targets: every graph model's mean mAP ≥ the baseline's, the best ≥ baseline + 3."""
    graph_archs = [a for a in archs if a != REFERENCE]
    if REFERENCE not in archs or not graph_archs:
        return "targets: need the baseline and at least one graph model to compare"
    mean = {a: float(np.mean([r.mAP for r in runs if r.arch == a])) for a in archs}
    below = [a for a in graph_archs if mean[a] < mean[REFERENCE]]
    best = max(graph_archs, key=mean.__getitem__)
    margin = mean[best] - mean[REFERENCE]
    return (
        f"targets: every graph model ≥ baseline — {'yes' if not below else 'no (' + ', '.join(below) + ')'}; "
        f"best {best} {margin:+.1f} vs baseline — {'yes' if margin >= TARGET_MARGIN else 'no'} "
        f"(needs +{TARGET_MARGIN:.0f})"
    )


def settings_line(config: Config, seeds: list[int]) -> str:
    data, settings = config.data, config.train
    return (
        f"{data.source} data ({data.synthetic.num_images} images, data.seed {data.seed}), {settings.backbone} "
        f"{'pretrained' if settings.pretrained_path else 'random init'} at {settings.image_size} px, "
        f"{settings.epochs} epochs, batch {settings.batch_size}, lr {settings.lr}, "
        f"head_lr_scale {settings.head_lr_scale}; train seeds {' '.join(map(str, seeds))}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )


def write_report(path: Path, command: str, settings: str, body: str, started: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Quality on the embedded benchmark\n\n"
        f"Command: `{command}`  \n"
        f"Date: {started:%Y-%m-%d %H:%M} UTC  \n"
        f"Settings: {settings}\n\n"
        "Test split; mAP, CF1 and OF1 in % (CF1/OF1 at threshold 0.5, means over seeds); look-alike AP is "
        f"the mean AP of {', '.join('/'.join(group) for group in LOOK_ALIKE_GROUPS)} (one sprite each, told apart "
        "only by their companions); label-query cos is the mean cosine between the label queries of the model's "
        "label-guided attention (about 0: each label looks for its own object; 1.00: all labels attend to the "
        "same places); attention entropy is the entropy of each label's weights over the locations as a fraction "
        "of the uniform one (1.00: a plain average; near 0: each label reads a single location); train s/epoch is "
        "wall time on this machine, mean over seeds.\n\n"
        f"{body}\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.now(timezone.utc)
    command = shlex.join(["python", "bench/quality.py", *(sys.argv[1:] if argv is None else argv)])
    overrides = base_overrides(args)
    config = load_config(args.params, overrides)
    archs = ordered_archs(config)
    paths = Paths(args.workdir)
    settings = settings_line(config, args.seeds)
    print(f"{len(archs)} architectures × {len(args.seeds)} seeds in {args.workdir}: {settings}", flush=True)
    prepare_once(config, paths)

    runs: list[Run] = []
    total = len(archs) * len(args.seeds)
    for arch in archs:
        for seed in args.seeds:
            clock = time.perf_counter()
            run = train_and_evaluate(load_config(args.params, [*overrides, f"train.seed={seed}"]), paths, arch, seed)
            runs.append(run)
            print(
                f"[{len(runs)}/{total}] {arch} seed {seed}: test mAP {run.mAP:.1f}, CF1 {run.CF1:.1f}, "
                f"OF1 {run.OF1:.1f} ({time.perf_counter() - clock:.0f} s)",
                flush=True,
            )

    body = f"{table(runs, archs)}\n\n{verdict(runs, archs)}"
    print(f"\n{body}")
    write_report(args.output, command, settings, body, started)
    write_json(args.output.with_suffix(".json"), {"command": command, "settings": settings, "runs": [asdict(r) for r in runs]})
    print(f"\nwritten to {args.output} (every run: {args.output.with_suffix('.json')})")


if __name__ == "__main__":
    main()
