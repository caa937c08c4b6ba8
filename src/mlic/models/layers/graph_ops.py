"""Static label-graph pieces shared by every graph model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlic.graph.label_graph import LabelGraph
from mlic.knobs import LabelGraphInput

#: Fixed, so an ablated model is rebuilt with the same inputs and two runs differ only by their seed.
ABLATION_SEED = 0


def ablated_graph_inputs(graph: LabelGraph, label_graph: LabelGraphInput) -> tuple[np.ndarray, np.ndarray]:
    """The `[C, C]` adjacency and `[C, E]` label embeddings a model gets under `label_graph`.

    `shuffled` hands label i the node of label π(i), for a permutation π without fixed points,
    in both the adjacency and the embeddings, so the graph stays internally consistent but no
    label keeps its own edges or word. `none` is the identity graph with orthonormal random
    vectors (Gaussian rows where there are more labels than dimensions).
    """
    adjacency = np.asarray(graph.adjacency, dtype=np.float32)
    embeddings = np.asarray(graph.label_embeddings, dtype=np.float32)
    rng = np.random.default_rng(ABLATION_SEED)
    num_classes, dim = embeddings.shape
    if label_graph == "shuffled":
        order = rng.permutation(num_classes)
        partner = np.empty(num_classes, dtype=np.int64)
        partner[order] = np.roll(order, -1)  # one cycle through all labels: nobody keeps its own node
        return adjacency[np.ix_(partner, partner)], embeddings[partner]
    if label_graph == "none":
        gaussian = rng.standard_normal((max(dim, num_classes), num_classes))
        if num_classes <= dim:
            vectors = np.linalg.qr(gaussian)[0].T[:, :dim]
        else:
            vectors = gaussian.T[:, :dim] / np.linalg.norm(gaussian.T[:, :dim], axis=1, keepdims=True)
        return np.eye(num_classes, dtype=np.float32), vectors.astype(np.float32)
    return adjacency, embeddings


def register_graph_buffers(module: nn.Module, graph: LabelGraph, label_graph: LabelGraphInput = "cooccurrence") -> None:
    """Store the graph inputs (ablated as `label_graph` asks) as buffers, so a saved state_dict
    carries them and the model is self-contained at serving time."""
    adjacency, embeddings = ablated_graph_inputs(graph, label_graph)
    module.register_buffer("adjacency", torch.from_numpy(adjacency.copy()))
    module.register_buffer("label_embeddings", torch.from_numpy(embeddings.copy()))
