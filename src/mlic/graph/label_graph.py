"""The label graph that the graph step writes and every graph model reads (`graph.npz`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlic.errors import GraphError
from mlic.graph.cooccurrence import cooccurrence_counts, reweighted_adjacency
from mlic.io import atomic_path


@dataclass(frozen=True)
class LabelGraph:
    """Label statistics from the training split plus one embedding per label.

    `adjacency` is the ML-GCN re-weighted, symmetrically normalised static graph (see
    `mlic.graph.cooccurrence.reweighted_adjacency`); models register all arrays as buffers so a
    saved state_dict is self-contained.
    """

    label_names: list[str]
    cooccurrence_counts: np.ndarray  # [C, C] images containing both i and j (diagonal = label_counts)
    label_counts: np.ndarray  # [C] training images containing label i
    adjacency: np.ndarray  # [C, C] float32, normalised static graph
    label_embeddings: np.ndarray  # [C, E] float32
    num_images: int

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def embedding_dim(self) -> int:
        return int(self.label_embeddings.shape[1])

    @classmethod
    def placeholder(cls, num_classes: int, embedding_dim: int) -> LabelGraph:
        """Right-shaped zeros, to rebuild a saved model whose buffers come from its state_dict."""
        return cls(
            label_names=[f"label_{i}" for i in range(num_classes)],
            cooccurrence_counts=np.zeros((num_classes, num_classes), dtype=np.float32),
            label_counts=np.zeros(num_classes, dtype=np.float32),
            adjacency=np.eye(num_classes, dtype=np.float32),
            label_embeddings=np.zeros((num_classes, embedding_dim), dtype=np.float32),
            num_images=0,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                label_names=np.array(self.label_names, dtype=object).astype(str),
                cooccurrence_counts=self.cooccurrence_counts.astype(np.int64),
                label_counts=self.label_counts.astype(np.int64),
                adjacency=self.adjacency.astype(np.float32),
                label_embeddings=self.label_embeddings.astype(np.float32),
                num_images=np.array(self.num_images, dtype=np.int64),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LabelGraph:
        path = Path(path)
        if not path.is_file():
            raise GraphError("label graph not found", file=path, fix="run `mlic graph` (or `dvc repro graph`) first")
        try:
            with np.load(path, allow_pickle=False) as archive:
                return cls(
                    label_names=[str(name) for name in archive["label_names"]],
                    cooccurrence_counts=archive["cooccurrence_counts"],
                    label_counts=archive["label_counts"],
                    adjacency=archive["adjacency"].astype(np.float32),
                    label_embeddings=archive["label_embeddings"].astype(np.float32),
                    num_images=int(archive["num_images"]),
                )
        except (KeyError, ValueError, OSError) as exc:
            raise GraphError(f"label graph is unreadable ({exc})", file=path, fix="re-run `mlic graph`") from exc


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
