import numpy as np
import pytest

from mlic.errors import GraphError
from mlic.graph.cooccurrence import conditional_probabilities, cooccurrence_counts, reweighted_adjacency
from mlic.graph.embeddings import file_embeddings
from mlic.graph.label_graph import LabelGraph
from mlic.steps import graph as graph_step


def test_counts_and_conditional_probabilities():
    counts = cooccurrence_counts([[0, 1], [0, 1], [0], [2]], 3)
    assert counts.tolist() == [[3, 2, 0], [2, 2, 0], [0, 0, 1]]
    probabilities = conditional_probabilities(counts)
    assert probabilities[0, 1] == pytest.approx(2 / 3)  # P(1 | 0)
    assert probabilities[1, 0] == pytest.approx(1.0)  # P(0 | 1)
    assert np.all(np.diag(probabilities) == 0)


def test_reweighted_adjacency_follows_ml_gcn():
    counts = cooccurrence_counts([[0, 1]] * 4 + [[0]] * 6 + [[2]], 3)  # P(1|0)=0.4, P(0|1)=1
    p = 0.2
    adjacency = reweighted_adjacency(counts, threshold=0.4, reweight=p)
    # before normalisation: rows 0 and 1 have one neighbour each (weight p) and 1-p on the diagonal;
    # label 2 has none and keeps weight 1. D^-1/2 A D^-1/2 with all degrees 1 leaves A unchanged.
    expected = np.array([[1 - p, p, 0], [p, 1 - p, 0], [0, 0, 1]])
    assert adjacency == pytest.approx(expected)
    assert np.allclose(adjacency, adjacency.T)
    # τ above P(1|0)=0.4 drops the 0→1 edge but keeps 1→0 (P(0|1)=1): label 0 keeps only itself
    sparse = reweighted_adjacency(counts, threshold=0.5, reweight=p)
    assert sparse[0, 1] == 0 and sparse[1, 0] > 0
    assert sparse[0, 0] == pytest.approx(1.0)


def test_file_embeddings_average_words_and_name_missing_labels(tmp_path):
    vectors = tmp_path / "glove.txt"
    vectors.write_text("traffic 1 0 0\nlight 0 1 0\nboat 0 0 2\n")
    out = file_embeddings(["traffic_light", "boat"], vectors)
    assert out[0] == pytest.approx(np.array([1, 1, 0]) / np.sqrt(2))
    assert out[1] == pytest.approx([0, 0, 1])
    with pytest.raises(GraphError, match="zebra"):
        file_embeddings(["zebra"], vectors)
    with pytest.raises(GraphError, match="not found"):
        file_embeddings(["boat"], tmp_path / "missing.txt")


def test_graph_step_writes_a_loadable_graph_from_the_training_split(tiny_config, tiny_paths):
    config = tiny_config(tiny_paths.root)
    result = graph_step.run(config, tiny_paths)
    graph = LabelGraph.load(result.graph_file)
    assert graph.num_classes == 6 and graph.embedding_dim == 16
    assert graph.num_images == 36  # train split only
    assert graph.cooccurrence_counts[0, 1] >= 12  # boat and sea come together in the fixture
    assert (tiny_paths.graph_dir / "graph.png").stat().st_size > 1000
    assert not list(tiny_paths.graph_dir.parent.glob(".graph*"))  # no staging left behind


def test_minilm_embeddings_carry_everyday_relations():
    from mlic.graph.embeddings import minilm_embeddings

    vectors = minilm_embeddings(["boat", "sea", "car", "street"])
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 3]  # a boat is closer to the sea than to a street
    assert similarity[2, 3] > similarity[2, 1]


def test_mlic_graph_imports_neither_torch_nor_timm(tmp_path):
    """The graph step is NumPy: with word vectors from a file, `mlic graph` loads no deep-learning
    library (the MiniLM source loads the sentence model, and torch with it, only when it runs)."""
    import subprocess
    import sys

    import yaml
    from prepared_data import make_prepared, tiny_params

    make_prepared(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tmp_path)))
    code = (
        "import sys; from mlic.cli import app\n"
        "try:\n    app(['graph', '--params', 'params.yaml', '--root', '.'])\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
        "print('loaded:', sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout
    assert (tmp_path / "artifacts" / "graph").is_dir()
