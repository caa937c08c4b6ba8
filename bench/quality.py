"""Quality of every architecture and its label-agnostic controls on the embedded benchmark.

    python bench/quality.py          # params.yaml's architectures + msbaseline, msshared; seeds 0 1 2 × data 0 1
    python bench/quality.py --archs baseline msshared 'msrn[head=per_label]' --seeds 0 1 --data-seeds 0
    python bench/quality.py --ablations --archs msrn sgfn --output bench/results/ablations.md

One model's test mAP on a few hundred synthetic images moves by a point or two with the training
seed alone, so a single run cannot say whether one model beats another: this trains every
(row, data seed, train seed) triple from scratch and reports the mean, the spread, and the
difference to three references with a 95% Welch confidence interval:

- `baseline`: one head on the last stage;
- `msbaseline`: stages 2–4 through the same projection, average-pooled — what several scales
  add without any attention;
- `msshared`: the same with attention pooling by one query shared by all labels — the strongest
  label-agnostic control, which every claim about label-specific attention has to beat.

A row is an architecture, optionally with knobs in brackets (`msrn[head=per_label]`), so a
variant is compared in the same run. `--ablations` expands each graph model into its controls:
`label_graph=shuffled`, `label_graph=none` and, for models with label queries, `queries=learned`,
each compared with the model as configured.

Knobs are to be chosen on validation mAP, which every row reports beside the test figures; the
test columns are for reporting only. It drives the pipeline's own steps (`mlic.steps.*`):
prepare, validate and graph once per data seed, then train and evaluate per triple (the
checkpoint removed first, so no run resumes another). The workdir holds the data and models,
away from the project's own `data/` and `artifacts/`. The table goes to `bench/results/quality.md`
with the exact command and date, every run beside it in `quality.json`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from mlic.config import Config, load_config
from mlic.data.canonical import load_labels
from mlic.data.synthetic import LOOK_ALIKE_GROUPS
from mlic.device import select_device
from mlic.io import read_json, write_json
from mlic.models.diagnostics import (
    ImageBoxes,
    distinct_query_map,
    pointing_game,
    probe_label_attention,
)
from mlic.models.saved import load_model
from mlic.paths import Paths
from mlic.steps import graph, prepare, train, validate
from mlic.steps.evaluate import evaluate_arch, split_dataset

REFERENCE = "baseline"
#: The references every row is compared with, in this order (those present in the run).
REFERENCES = ("baseline", "msbaseline", "msshared")
CONTROLS = ("msbaseline", "msshared")
#: The models whose label-specific attention the targets are about.
RESEARCH = ("msrn", "sgfn", "mgsgn", "cmasge")
GRAPH_MODELS = ("mlgcn", *RESEARCH)
#: A research model should beat `msshared` by this many mAP points, with the CI of Δ above 0.
TARGET_MARGIN = 3.0
#: And its label queries should point apart: mean pairwise cosine at most this.
TARGET_QUERY_COSINE = 0.5
#: And its labels' attention should find their own objects: pointing-game points above the
#: shared saliency (the mean of all labels' maps).
TARGET_POINTING_MARGIN = 10.0
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "quality.md"


@dataclass(frozen=True)
class Run:
    """One trained and evaluated (row, data seed, train seed) triple; metrics in percent."""

    row: str
    arch: str
    data_seed: int
    seed: int
    mAP: float
    #: Validation mAP: what knobs and models are chosen by.
    val_mAP: float
    CF1: float
    OF1: float
    #: Mean AP over the benchmark's look-alike categories (one sprite, told apart only by their
    #: companions): the part of mAP that needs context. NaN on other data.
    look_alike_AP: float
    #: Mean AP over the other categories.
    other_AP: float
    parameters: int
    seconds_per_epoch: float
    #: Mean cosine between the label queries of its label-guided attention (1.0: every label
    #: attends to the same places); NaN for models without one.
    label_query_cosine: float
    #: Entropy of each label's attention weights as a fraction of the uniform one (0: each label
    #: reads one location); NaN for models without label-guided attention.
    attention_entropy: float
    #: Pointing game over the test split, % hits of the labels' own maps (mean over stages), and
    #: of the shared saliency (mean of all labels' maps); NaN without label-guided attention.
    pointing_game: float
    pointing_shared: float
    #: The labels' own hits per stage (or scale), in the order the model attends.
    pointing_per_stage: tuple[float, ...]
    #: Test mAP points the differences between the label queries are worth: the model's own
    #: queries against every label asking with the mean query (NaN without label-guided
    #: attention, and in runs recorded before this field).
    distinct_query_mAP: float = float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the parameters file")
    parser.add_argument(
        "--archs",
        nargs="+",
        metavar="ROW",
        help="architectures, optionally with knobs: `msrn[head=per_label,attention=cosine]` "
        "(default: `architectures` from the parameters, plus msbaseline and msshared)",
    )
    parser.add_argument(
        "--ablations", action="store_true", help="add label_graph/queries ablations of each graph model"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="values of train.seed")
    parser.add_argument("--data-seeds", nargs="+", type=int, default=[0, 1], help="values of data.seed")
    parser.add_argument("--epochs", type=int, help="default: train.epochs from the parameters")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter, as `mlic --set` (repeatable)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".mlic/bench-quality"), help="where data and models are written"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="the markdown report")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in the output's .json and train only the missing ones (an interrupted run)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the report of the --archs rows from the runs in the output's .json "
        "(runs of several, or interrupted, invocations)",
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Row:
    """One line of the table: an architecture with the knobs that differ from params.yaml."""

    name: str
    arch: str
    knobs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Row:
        match = re.fullmatch(r"([a-z0-9_]+)(?:\[(.*)\])?", text.strip())
        if not match:
            raise SystemExit(f"cannot read row {text!r}: write ARCH or ARCH[knob=value,...]")
        items = [item for item in (match[2] or "").split(",") if item]
        if any("=" not in item for item in items):
            raise SystemExit(f"cannot read the knobs of {text!r}: write knob=value, separated by commas")
        knobs = tuple((knob, value) for knob, value in (item.split("=", 1) for item in items))
        return cls(text.strip(), match[1], knobs)

    def base(self, present: set[str]) -> str | None:
        """The row a variant is compared with: itself without its last knob when that ran
        (`msrn[word_norm=1,label_graph=none]` against `msrn[word_norm=1]`), else its architecture
        as configured; None for a row without knobs, or with no base among the runs."""
        if not self.knobs:
            return None
        kept = ",".join(f"{knob}={value}" for knob, value in self.knobs[:-1])
        parent = f"{self.arch}[{kept}]" if kept else self.arch
        return next((name for name in (parent, self.arch) if name in present), None)

    def overrides(self) -> list[str]:
        return [f"architectures=[{self.arch}]", *(f"models.{self.arch}.{knob}={value}" for knob, value in self.knobs)]


def ablation_rows(arch: str) -> list[Row]:
    """A graph model as configured, then without its graph, then (query models) without its queries."""
    rows = [Row(arch, arch), *(Row.parse(f"{arch}[label_graph={mode}]") for mode in ("shuffled", "none"))]
    return rows + ([Row.parse(f"{arch}[queries=learned]")] if arch in RESEARCH else [])


def table_rows(args: argparse.Namespace, config: Config) -> list[Row]:
    """The references first (as configured), so every row below them reads as a comparison."""
    names = args.archs or [*config.architectures, *CONTROLS]
    rows = [Row.parse(name) for name in names]
    if args.ablations:
        rows = [
            ablation
            for row in rows
            for ablation in (ablation_rows(row.arch) if row.arch in GRAPH_MODELS and not row.knobs else [row])
        ]
    references = [row for name in REFERENCES for row in rows if row.name == name]
    return references + [row for row in rows if row not in references]


def base_overrides(args: argparse.Namespace) -> list[str]:
    """The user's overrides, plus the epochs the flags ask for."""
    return [*args.overrides, *([f"train.epochs={args.epochs}"] if args.epochs is not None else [])]


def prepare_once(config: Config, paths: Paths) -> None:
    """Data, its validation and the label graph depend on data/graph settings only, not the seed."""
    for step in (prepare, validate, graph):
        started = time.perf_counter()
        step.run(config, paths)
        print(f"{step.__name__.rsplit('.', 1)[-1]}: done in {time.perf_counter() - started:.1f} s", flush=True)


@dataclass(frozen=True)
class TestSplit:
    """The test images as evaluation sees them, with their boxes: what attention is probed on."""

    images: torch.Tensor
    boxes: list[ImageBoxes]
    targets: np.ndarray

    @classmethod
    def load(cls, config: Config, paths: Paths) -> TestSplit:
        num_classes = len(load_labels(paths.labels_file).names)
        dataset = split_dataset(paths, "test", num_classes, config.train.image_size, config)
        boxes = []
        for record in dataset.split.records:
            per_label: dict[int, list[list[float]]] = {}
            for label, box in record.boxes:
                per_label.setdefault(label, []).append(box)
            boxes.append(ImageBoxes(record.width, record.height, per_label))
        images = torch.stack([dataset[index][0] for index in range(len(dataset))])
        return cls(images, boxes, dataset.targets().numpy())


def train_and_evaluate(config: Config, paths: Paths, test: TestSplit, row: Row, data_seed: int, seed: int) -> Run:
    arch = row.arch
    shutil.rmtree(paths.checkpoint_file(arch).parent, ignore_errors=True)
    result = train.run(config, paths, arch)
    if result is None:  # only under torchrun, on ranks other than 0
        raise SystemExit("bench/quality.py runs in one process: do not start it under torchrun")
    names = load_labels(paths.labels_file).names
    evaluation = evaluate_arch(arch, config, paths, names, select_device(config.train.device))
    metrics = evaluation.metrics
    model, _ = load_model(paths.model_dir(arch))
    attention = probe_label_attention(model, test.images[:8])
    pointing = pointing_game(model, test.images, test.boxes, len(names))
    distinct = distinct_query_map(model, test.images, test.targets)
    look_alike, other = context_split_ap(config, names, evaluation.per_class_ap)
    nan = float("nan")
    return Run(
        row=row.name,
        arch=arch,
        data_seed=data_seed,
        seed=seed,
        mAP=metrics["mAP"],
        val_mAP=metrics.get("val_mAP", nan),
        CF1=metrics["CF1"],
        OF1=metrics["OF1"],
        look_alike_AP=look_alike,
        other_AP=other,
        parameters=sum(p.numel() for p in model.parameters()),
        seconds_per_epoch=result.seconds_per_epoch,
        label_query_cosine=nan if attention is None else attention.query_cosine,
        attention_entropy=nan if attention is None else attention.entropy,
        pointing_game=nan if pointing is None else pointing.mean,
        pointing_shared=nan if pointing is None else pointing.shared_mean,
        pointing_per_stage=() if pointing is None else tuple(round(hit, 1) for hit in pointing.per_stage),
        distinct_query_mAP=nan if distinct is None else distinct,
    )


def context_split_ap(config: Config, names: list[str], per_class_ap: np.ndarray) -> tuple[float, float]:
    """Mean AP of the look-alike categories and of the others (NaN on data other than synthetic)."""
    if config.data.source != "synthetic":
        return float("nan"), float("nan")
    look_alike = np.zeros(len(names), dtype=bool)
    look_alike[[names.index(name) for group in LOOK_ALIKE_GROUPS for name in group]] = True
    return float(np.nanmean(per_class_ap[look_alike])), float(np.nanmean(per_class_ap[~look_alike]))


def attention_figure(values: list[float]) -> str:
    """Mean over runs of a label-attention figure, or a dash for a model without that attention."""
    finite = [value for value in values if np.isfinite(value)]
    return f"{np.mean(finite):.2f}" if finite else "–"


def distinct_figure(values: list[float]) -> str:
    """Mean ± std over the runs that measured it, with their count when some did not; a dash for none."""
    measured = [value for value in values if not np.isnan(value)]
    if not measured:
        return "–"
    figure = f"{np.mean(measured):+.1f}" + (f" ± {np.std(measured, ddof=1):.1f}" if len(measured) > 1 else "")
    return figure if len(measured) == len(values) else f"{figure} ({len(measured)} runs)"


def pointing_figure(runs: list[Run], row: str) -> str:
    """Mean pointing-game hits of the labels' own maps and of the shared saliency, per stage too."""
    labels = figures(runs, row, "pointing_game")
    if not all(np.isfinite(labels)):
        return "–"
    stages = np.mean([run.pointing_per_stage for run in runs if run.row == row], axis=0)
    per_stage = f" ({'/'.join(f'{hit:.0f}' for hit in stages)})" if len(stages) > 1 else ""
    return f"{np.mean(labels):.1f}{per_stage} / {np.mean(figures(runs, row, 'pointing_shared')):.1f}"


def spread(values: list[float]) -> str:
    """Mean ± sample standard deviation (the ± is left out for a single run)."""
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


@dataclass(frozen=True)
class Difference:
    """mean(a) − mean(b) with its 95% Welch confidence interval (NaN bounds with under 2 runs)."""

    delta: float
    low: float
    high: float

    def __str__(self) -> str:
        if not np.isfinite(self.low):
            return f"{self.delta:+.1f}"
        return f"{self.delta:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def welch(a: list[float], b: list[float]) -> Difference:
    """Welch's unequal-variance t interval for the difference of two means."""
    delta = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return Difference(delta, float("nan"), float("nan"))
    var_a, var_b = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    standard_error = float(np.sqrt(var_a + var_b))
    if standard_error == 0.0:
        return Difference(delta, delta, delta)
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, dof)) * standard_error
    return Difference(delta, delta - half, delta + half)


def figures(runs: list[Run], row: str, field: str) -> list[float]:
    return [getattr(run, field) for run in runs if run.row == row]


def data_seeds_of(runs: list[Run], row: str) -> set[int]:
    return {run.data_seed for run in runs if run.row == row}


def compare(runs: list[Run], row: str, reference: str, field: str = "mAP") -> Difference:
    """`row` − `reference` over the data seeds both were trained on: data seeds differ in
    difficulty, so a row run on fewer of them is compared with the reference on those only."""
    shared = data_seeds_of(runs, row) & data_seeds_of(runs, reference)
    mine, theirs = ([run for run in runs if run.data_seed in shared and run.row == name] for name in (row, reference))
    return welch([getattr(run, field) for run in mine], [getattr(run, field) for run in theirs])


def table(runs: list[Run], rows: list[Row]) -> str:
    """Every row against the references present in the run and, for a variant, against its base
    (`Row.base`)."""
    present = {run.row for run in runs}
    references = [name for name in REFERENCES if name in present]
    has_variants = any(row.base(present) for row in rows)
    headers = [
        "row",
        "test mAP",
        "val mAP",
        *(f"Δ vs {name} [95% CI]" for name in references),
        *(["Δ vs base [95% CI]"] if has_variants else []),
        "look-alike AP",
        "other AP",
        "label-query cos",
        "attention entropy",
        "pointing game: labels / shared",
        "mAP owed to distinct queries",
        "runs (data seeds)",
        "params (M)",
        "train s/epoch",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in rows:
        maps = figures(runs, row.name, "mAP")
        deltas = ["–" if row.name == name else str(compare(runs, row.name, name)) for name in references]
        if has_variants:
            base = row.base(present)
            deltas.append(str(compare(runs, row.name, base)) if base else "–")
        mine = [run for run in runs if run.row == row.name]
        lines.append(
            f"| {row.name} | {spread(maps)} | {spread(figures(runs, row.name, 'val_mAP'))} | {' | '.join(deltas)} "
            f"| {np.mean(figures(runs, row.name, 'look_alike_AP')):.1f} "
            f"| {np.mean(figures(runs, row.name, 'other_AP')):.1f} "
            f"| {attention_figure(figures(runs, row.name, 'label_query_cosine'))} "
            f"| {attention_figure(figures(runs, row.name, 'attention_entropy'))} | {pointing_figure(runs, row.name)} "
            f"| {distinct_figure(figures(runs, row.name, 'distinct_query_mAP'))} "
            f"| {len(mine)} ({', '.join(map(str, sorted(data_seeds_of(runs, row.name))))}) "
            f"| {mine[0].parameters / 1e6:.2f} "
            f"| {np.mean(figures(runs, row.name, 'seconds_per_epoch')):.1f} |"
        )
    return "\n".join(lines)


def context_table(runs: list[Run], rows: list[Row], control: str = "msshared") -> str:
    """Where a row's gain over the control comes from: look-alike categories (told apart only by
    their context) or the others."""
    lines = [
        f"| row | Δ look-alike AP vs {control} [95% CI] | Δ other AP vs {control} [95% CI] | larger on look-alikes |",
        "|---|---:|---:|---|",
    ]
    for row in rows:
        if row.name == control:
            continue
        look = compare(runs, row.name, control, "look_alike_AP")
        other = compare(runs, row.name, control, "other_AP")
        lines.append(f"| {row.name} | {look} | {other} | {'yes' if look.delta > other.delta else 'no'} |")
    return "\n".join(lines)


def verdict(runs: list[Run], rows: list[Row]) -> str:
    """The targets for each research model as configured: queries apart, attention on the label's
    own object, a lead over msshared with its CI above 0, and the lead larger on look-alikes."""
    present = {run.row for run in runs}
    if "msshared" not in present:
        return "targets: need msshared in the run to judge the research models"
    lines = []
    for name in (row.name for row in rows if row.arch in RESEARCH and not row.knobs):
        lead = compare(runs, name, "msshared")
        cosine = float(np.nanmean(figures(runs, name, "label_query_cosine")))
        look = compare(runs, name, "msshared", "look_alike_AP").delta
        other = compare(runs, name, "msshared", "other_AP").delta
        pointing = float(np.mean(figures(runs, name, "pointing_game")))
        shared = float(np.mean(figures(runs, name, "pointing_shared")))
        checks = [
            f"label-query cos {cosine:.2f} ≤ {TARGET_QUERY_COSINE} — "
            f"{'yes' if cosine <= TARGET_QUERY_COSINE else 'no'}",
            f"pointing game {pointing:.1f} ≥ shared saliency {shared:.1f} + {TARGET_POINTING_MARGIN:.0f} — "
            f"{'yes' if pointing >= shared + TARGET_POINTING_MARGIN else 'no'}",
            f"mAP vs msshared {lead} ≥ +{TARGET_MARGIN:.0f} with CI above 0 — "
            f"{'yes' if lead.delta >= TARGET_MARGIN and lead.low > 0 else 'no'}",
            f"gain larger on look-alikes ({look:+.1f} vs {other:+.1f}) — {'yes' if look > other else 'no'}",
        ]
        lines.append(f"- {name}: " + "; ".join(checks))
    return "targets:\n" + "\n".join(lines) if lines else ""


def settings_line(config: Config, seeds: list[int], data_seeds: list[int]) -> str:
    data, settings = config.data, config.train
    return (
        f"{data.source} data ({data.synthetic.num_images} images, data seeds {' '.join(map(str, data_seeds))}), "
        f"{settings.backbone} {'pretrained' if settings.pretrained or settings.pretrained_path else 'random init'} "
        f"at {settings.image_size} px, "
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
        "mAP and AP in %, test split unless named val, mean ± std over every (data seed, train seed) run of the row "
        "(their count and data seeds in `runs`). "
        "Knobs are chosen on val mAP; test is reported, never chosen on. Δ is the difference of means with "
        "its 95% Welch confidence interval, over the data seeds both rows have (they differ in difficulty); "
        "a variant's base is the same row without its last knob when that ran, else the architecture as "
        "configured. "
        "Look-alike AP is the mean AP of "
        f"{', '.join('/'.join(group) for group in LOOK_ALIKE_GROUPS)} (one sprite each, told apart only by "
        "their companions), other AP that of the remaining categories. Label-query cos is the mean cosine "
        "between the label queries of the model's label-guided attention (about 0: each label looks for its "
        "own object; 1.00: all labels attend to the same places; a dash where there is one query or none); "
        "attention entropy is that of each label's weights over the locations as a fraction of the uniform "
        "one (1.00: a plain average). Pointing game: % of the positive (image, label) pairs of the test split "
        "whose attention map peaks on one of that label's boxes (grown by one cell), for the labels' own maps "
        "(per stage in brackets) and for the shared saliency, the mean of all labels' maps. mAP owed to "
        "distinct queries: test mAP with the model's own label queries minus with every label asking its "
        "attention with the mean of the queries (about 0: the label-specific part of the queries adds "
        "nothing, however far apart they point). Train s/epoch is wall time on this machine.\n\n"
        f"{body}\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.now(UTC)
    command = shlex.join(["python", "bench/quality.py", *(sys.argv[1:] if argv is None else argv)])
    overrides = base_overrides(args)
    config = load_config(args.params, overrides)
    rows = table_rows(args, config)
    settings = settings_line(config, args.seeds, args.data_seeds)
    print(
        f"{len(rows)} rows × {len(args.data_seeds)} data seeds × {len(args.seeds)} seeds in {args.workdir}: {settings}",
        flush=True,
    )

    if args.report_only:
        kept = saved_runs(read_json(args.output.with_suffix(".json"), what="bench runs"))
        runs = [run for run in kept if run.data_seed in args.data_seeds and run.seed in args.seeds]
        reported = {run.row for run in runs}
        # The seeds the reported runs have: a row may lack some of those asked for.
        settings = settings_line(config, sorted({run.seed for run in runs}), sorted({run.data_seed for run in runs}))
        rows = [row for row in rows if row.name in reported]
        write_outputs(args.output, command, settings, rows, runs, started, kept=kept)
        return

    runs = saved_runs(read_json(args.output.with_suffix(".json"), what="bench runs")) if args.resume else []
    done = {(run.row, run.data_seed, run.seed) for run in runs}
    total = sum(
        (row.name, data_seed, seed) not in done for data_seed in args.data_seeds for row in rows for seed in args.seeds
    )
    trained = 0
    for data_seed in args.data_seeds:
        paths = Paths(args.workdir / f"data-seed-{data_seed}")
        data_config = load_config(args.params, [*overrides, f"data.seed={data_seed}"])
        prepare_once(data_config, paths)
        test = TestSplit.load(data_config, paths)
        for row in rows:
            for seed in args.seeds:
                if (row.name, data_seed, seed) in done:
                    continue
                clock = time.perf_counter()
                run_overrides = [*overrides, *row.overrides(), f"data.seed={data_seed}", f"train.seed={seed}"]
                run = train_and_evaluate(load_config(args.params, run_overrides), paths, test, row, data_seed, seed)
                runs.append(run)
                trained += 1
                print(
                    f"[{trained}/{total}] {row.name} data seed {data_seed} seed {seed}: test mAP {run.mAP:.1f}, "
                    f"val mAP {run.val_mAP:.1f} ({time.perf_counter() - clock:.0f} s)",
                    flush=True,
                )
                write_json(
                    args.output.with_suffix(".json"),
                    {"command": command, "settings": settings, "runs": [asdict(r) for r in runs]},
                )

    write_outputs(args.output, command, settings, rows, runs, started)


def saved_runs(saved: dict) -> list[Run]:
    """The runs of a bench JSON, as written by this script."""
    return [Run(**{**run, "pointing_per_stage": tuple(run["pointing_per_stage"])}) for run in saved["runs"]]


def write_outputs(
    output: Path,
    command: str,
    settings: str,
    rows: list[Row],
    runs: list[Run],
    started: datetime,
    kept: list[Run] | None = None,
) -> None:
    """The report of `runs`; the .json keeps `kept` (default: `runs`), so that reporting a subset
    of the seeds never drops the others' runs."""
    contexts = context_table(runs, rows) if "msshared" in {run.row for run in runs} else ""
    body = f"{table(runs, rows)}\n\n{contexts}\n\n{verdict(runs, rows)}"
    print(f"\n{body}")
    write_report(output, command, settings, body, started)
    saved = [asdict(run) for run in (runs if kept is None else kept)]
    write_json(output.with_suffix(".json"), {"command": command, "settings": settings, "runs": saved})
    print(f"\nwritten to {output} (every run: {output.with_suffix('.json')})")


if __name__ == "__main__":
    main()
