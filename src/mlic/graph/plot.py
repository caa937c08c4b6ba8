"""A picture of the label graph: nodes sized by frequency, edges from the conditional probabilities."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np

from mlic.graph.cooccurrence import conditional_probabilities
from mlic.io import atomic_path


def draw_label_graph(label_names: list[str], counts: np.ndarray, threshold: float, target: Path) -> Path:
    """Draw edges i→j with P(j|i) ≥ τ — the edges ML-GCN keeps — so a user sees the prior learnt."""
    probabilities = conditional_probabilities(counts)
    graph = nx.DiGraph()
    label_counts = np.diag(counts)
    for index, name in enumerate(label_names):
        graph.add_node(name, count=int(label_counts[index]))
    for i, j in zip(*np.nonzero(probabilities >= threshold), strict=True):
        graph.add_edge(label_names[i], label_names[j], weight=float(probabilities[i, j]))
    figure, axes = plt.subplots(figsize=(10, 8))
    layout = nx.spring_layout(graph, seed=0, k=1.2 / max(1, len(label_names)) ** 0.5)
    sizes = [300 + 1700 * c / max(1, label_counts.max()) for c in label_counts]
    widths = [0.5 + 3 * graph.edges[e]["weight"] for e in graph.edges]
    nx.draw_networkx_nodes(graph, layout, node_size=sizes, node_color="#9ecae1", ax=axes)
    nx.draw_networkx_labels(graph, layout, font_size=8, ax=axes)
    nx.draw_networkx_edges(graph, layout, width=widths, alpha=0.5, arrowsize=8, ax=axes, connectionstyle="arc3,rad=0.1")
    axes.set_title(f"Label graph: edges P(j|i) ≥ {threshold} (node size = training images)")
    axes.axis("off")
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return target
