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


def symmetric_normalise(adjacency: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`D^-1/2 A D^-1/2`: keeps repeated propagation from growing or shrinking features."""
    degree = adjacency.sum(dim=-1).clamp_min(eps)
    inv_sqrt = degree.pow(-0.5)
    return inv_sqrt.unsqueeze(-1) * adjacency * inv_sqrt.unsqueeze(-2)


def symmetric_normalise_np(adjacency: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """NumPy twin of `symmetric_normalise` for the graph step (no torch needed to build graph.npz)."""
    return symmetric_normalise(torch.from_numpy(np.asarray(adjacency, dtype=np.float64)), eps).numpy()


def synthetic_label_graph(
    num_classes: int,
    embedding_dim: int = 384,
    num_images: int = 2000,
    seed: int = 0,
    threshold: float = 0.4,
    reweight: float = 0.2,
) -> LabelGraph:
    """A label graph with realistic structure, made without the data and graph steps.

    For tests and benchmarks: labels belong to scenes of four, an image draws 2–5 labels mostly
    from one scene, and embeddings sit near their scene's centroid — so the adjacency has real
    edges and sparsity and the embeddings carry the same prior (an identity graph, as in
    `LabelGraph.placeholder`, would hide bugs in edge masking and graph normalisation).
    """
    from mlic.graph.cooccurrence import cooccurrence_counts, reweighted_adjacency  # graph imports us

    rng = np.random.default_rng(seed)
    num_scenes = max(1, num_classes // 4)
    scene_of = np.arange(num_classes) % num_scenes
    label_lists = []
    for _ in range(num_images):
        scene_labels = np.flatnonzero(scene_of == rng.integers(num_scenes))
        size = int(rng.integers(2, 6))
        from_scene = rng.random(size) < 0.85
        picks = np.where(from_scene, rng.choice(scene_labels, size), rng.integers(num_classes, size=size))
        label_lists.append(sorted(set(picks.tolist())))
    counts = cooccurrence_counts(label_lists, num_classes)
    centroids = rng.normal(size=(num_scenes, embedding_dim))
    embeddings = centroids[scene_of] + 0.7 * rng.normal(size=(num_classes, embedding_dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return LabelGraph(
        label_names=[f"label_{i}" for i in range(num_classes)],
        cooccurrence_counts=counts,
        label_counts=np.diag(counts).copy(),
        adjacency=reweighted_adjacency(counts, threshold, reweight),
        label_embeddings=embeddings.astype(np.float32),
        num_images=num_images,
    )
