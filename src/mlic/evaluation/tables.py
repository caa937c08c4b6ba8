"""The metrics table (val mAP, then the papers' test columns), as rows any renderer can print.

Torch-free, so the demo and `mlic report` print it from `metrics/evaluation.json` without loading
a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlic.evaluation.gate import VAL_MAP

_TOP_K_KEY = re.compile(r"CF1_top(\d+)")
#: Headers that differ from the metric's key.
_HEADERS = {VAL_MAP: "val mAP"}


@dataclass(frozen=True)
class Table:
    """Headers and text cells: one table, printed as Markdown or (by `mlic report`) as HTML."""

    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |", "|---" * len(self.headers) + "|"]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in self.rows)])


def table_columns(per_arch: dict[str, dict[str, float]]) -> list[str]:
    """The metric keys the table shows: val mAP (what chooses), then the papers' test columns.

    The top-k columns are those of the k the metrics were computed with (`evaluate.top_k`), read
    from their keys, so a table printed later from evaluation.json (the demo) shows that run's k.
    """
    ks = sorted(
        {int(match[1]) for metrics in per_arch.values() for key in metrics if (match := _TOP_K_KEY.fullmatch(key))}
    )
    top = [f"{name}_top{k}" for k in ks for name in ("CF1", "OF1")]
    return [VAL_MAP, "mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", *top]


def metrics_rows(per_arch: dict[str, dict[str, float]], best_arch: str | None = None) -> Table:
    """Val mAP and the papers' test columns per architecture, the chosen one starred."""
    columns = table_columns(per_arch)
    rows = [
        [f"{arch}{' ★' if arch == best_arch else ''}", *(f"{metrics.get(c, float('nan')):.1f}" for c in columns)]
        for arch, metrics in per_arch.items()
    ]
    return Table(["arch", *(_HEADERS.get(column, column) for column in columns)], rows)


def metrics_table(per_arch: dict[str, dict[str, float]], best_arch: str | None = None) -> str:
    """Markdown table of val mAP and the papers' test columns, the chosen architecture starred."""
    return metrics_rows(per_arch, best_arch).markdown()
