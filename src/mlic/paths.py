"""Where each step reads and writes, relative to one project root.

The CLI, DVC stages and Kubeflow components all pass a `Paths`, so a component can point the
same step code at its artifact folders instead of the project tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    # prepare
    @property
    def raw_data(self) -> Path:
        """The DVC-tracked input datasets: every file under it is a dependency of `prepare`."""
        return self.root / "data" / "raw"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    def split_file(self, split: str) -> Path:
        return self.prepared / f"{split}.json"

    @property
    def labels_file(self) -> Path:
        return self.prepared / "labels.json"

    # validate
    @property
    def validation_reports(self) -> Path:
        return self.root / "reports" / "validation"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def data_metrics(self) -> Path:
        return self.metrics / "data.json"

    @property
    def label_frequency(self) -> Path:
        """Images per label and split: a committed table beside the metrics, not a metric (80+ columns)."""
        return self.metrics / "label_frequency.csv"

    # graph
    @property
    def graph_dir(self) -> Path:
        return self.root / "artifacts" / "graph"

    @property
    def graph_file(self) -> Path:
        return self.graph_dir / "graph.npz"

    # train
    @property
    def models_dir(self) -> Path:
        return self.root / "artifacts" / "models"

    def model_dir(self, arch: str) -> Path:
        return self.models_dir / arch

    def checkpoint_file(self, arch: str) -> Path:
        """Resumable state lives outside the stage output (DVC deletes outputs before a re-run)."""
        return self.root / "artifacts" / "checkpoints" / arch / "last.pt"

    def train_logs(self, arch: str) -> Path:
        """dvclive's metrics.json and curves: under metrics/, committed, so `dvc metrics diff <rev>` finds them."""
        return self.metrics / "train" / arch

    # evaluate
    @property
    def evaluation_metrics(self) -> Path:
        return self.metrics / "evaluation.json"

    @property
    def per_class_metrics(self) -> Path:
        return self.metrics / "per_class.csv"

    @property
    def plots_dir(self) -> Path:
        return self.root / "reports" / "plots"

    @property
    def report_dir(self) -> Path:
        """`mlic report`'s page: index.html (self-contained) and report.md with its PNGs."""
        return self.root / "reports" / "report"

    @property
    def best_file(self) -> Path:
        return self.root / "artifacts" / "best.json"

    # package / serve
    @property
    def serving_dir(self) -> Path:
        return self.root / "artifacts" / "serving"

    @property
    def model_store(self) -> Path:
        return self.serving_dir / "model-store"

    @property
    def serving_config(self) -> Path:
        return self.serving_dir / "config.properties"

    @property
    def serve_state(self) -> Path:
        """Run-time state of a local TorchServe (its cwd: logs, key_file.json, pid, TMPDIR)."""
        return self.root / ".mlic" / "serve"
