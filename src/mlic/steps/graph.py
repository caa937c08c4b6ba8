"""graph step: label co-occurrence graph + label embeddings from the training split → graph.npz.

Only the training split feeds the statistics, so the prior the graph models learn never peeks at
validation or test labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlic.config import Config
from mlic.data.canonical import load_labels, load_split
from mlic.graph.cooccurrence import cooccurrence_counts, reweighted_adjacency
from mlic.graph.embeddings import label_embeddings
from mlic.graph.label_graph import LabelGraph
from mlic.graph.plot import draw_label_graph
from mlic.io import atomic_dir
from mlic.paths import Paths

log = logging.getLogger(__name__)


@dataclass
class GraphResult:
    graph_file: Path
    picture: Path
    num_classes: int
    num_edges: int
    embedding_dim: int

    def summary(self) -> str:
        return (
            f"label graph: {self.num_classes} labels, {self.num_edges} edges kept, "
            f"{self.embedding_dim}-d embeddings → {self.graph_file} (picture: {self.picture})"
        )


def build_graph(config: Config, paths: Paths) -> LabelGraph:
    labels = load_labels(paths.labels_file)
    train = load_split(paths.split_file("train"))
    counts = cooccurrence_counts([r.labels for r in train.records], labels.num_classes)
    log.info("embedding %d label names (%s)", labels.num_classes, config.graph.embeddings.source)
    embeddings = label_embeddings(labels.names, config.graph.embeddings.source, config.graph.embeddings.path)
    return LabelGraph(
        label_names=labels.names,
        cooccurrence_counts=counts,
        label_counts=np.diag(counts).copy(),
        adjacency=reweighted_adjacency(counts, config.graph.threshold, config.graph.reweight),
        label_embeddings=embeddings,
        num_images=len(train.records),
    )


def run(config: Config, paths: Paths) -> GraphResult:
    graph = build_graph(config, paths)
    with atomic_dir(paths.graph_dir) as staging:
        graph.save(staging / paths.graph_file.name)
        draw_label_graph(graph.label_names, graph.cooccurrence_counts, config.graph.threshold, staging / "graph.png")
    off_diagonal = graph.adjacency - np.diag(np.diag(graph.adjacency))
    return GraphResult(
        graph_file=paths.graph_file,
        picture=paths.graph_dir / "graph.png",
        num_classes=graph.num_classes,
        num_edges=int((off_diagonal > 0).sum()),
        embedding_dim=graph.embedding_dim,
    )
