"""Every registered architecture honours the model contract; the shared layers do what the papers
need of them. Small on purpose: resnet18 at 64 px, batch 2, one CPU thread."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlic.errors import ConfigError
from mlic.graph.label_graph import LabelGraph, synthetic_label_graph
from mlic.models import create_model, list_models, model_spec
from mlic.models.cmasge import AdjacencySimilarityEmbedding
from mlic.models.layers import (
    Backbone,
    DiffPool,
    GraphAttention,
    LabelGuidedAttention,
    WeightedSum,
    ablated_graph_inputs,
)
from mlic.models.layers.attention import ChannelAttentionPool
from mlic.models.mgsgn import MultiPerspectiveGraph
from mlic.models.saved import load_model, save_model

NUM_CLASSES = 10
EMBEDDING_DIM = 32
IMAGE_SIZE = 64
BACKBONE = "resnet18"
ARCHS = list_models()
GRAPH_FREE = {"baseline", "msbaseline", "msshared"}
#: The models whose label-guided attention takes one query per label (the `queries` knob).
QUERY_MODELS = ["msrn", "mgsgn", "sgfn", "cmasge"]
GRAPH_MODELS = ["mlgcn", *QUERY_MODELS]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def graph() -> LabelGraph:
    return synthetic_label_graph(NUM_CLASSES, embedding_dim=EMBEDDING_DIM, num_images=400)


def images(batch: int = 2, size: int = IMAGE_SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def build(arch: str, graph: LabelGraph, seed: int = 0, backbone: str = BACKBONE, **knobs: object) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, NUM_CLASSES, graph, backbone=backbone, knobs=knobs)


def perturbed(model: nn.Module, seed: int = 1) -> nn.Module:
    """Move every parameter off its initial value, so zero-initialised gates and equal fusion
    weights cannot hide a branch from an equality check."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def training_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """What training computes: BCE on the logits plus the model's auxiliary loss, if any."""
    logits = model(batch).float()
    targets = torch.zeros_like(logits)
    targets[:, ::3] = 1.0
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    if hasattr(model, "auxiliary_loss"):
        auxiliary = model.auxiliary_loss()
        assert auxiliary.dim() == 0 and torch.isfinite(auxiliary).item()
        loss = loss + auxiliary.float()
    return loss


# --- the model contract, for every registered architecture -------------------------------------


def test_every_architecture_is_registered() -> None:
    assert set(ARCHS) == {"baseline", "mlgcn", "msrn", "mgsgn", "sgfn", "cmasge", "msbaseline", "msshared"}


@pytest.mark.parametrize("arch", ARCHS)
def test_output_is_finite_logits_per_label(arch: str, graph: LabelGraph) -> None:
    logits = build(arch, graph).eval()(images())
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_parameter(arch: str, graph: LabelGraph) -> None:
    model = perturbed(build(arch, graph)).train()
    training_loss(model, images()).backward()
    without_grad = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert without_grad == []
    head = [p.grad for name, p in model.named_parameters() if not name.startswith("backbone.")]
    assert all(torch.isfinite(g).all() for g in head)
    assert sum(float(g.abs().sum()) for g in head) > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_builds_the_same_model(arch: str, graph: LabelGraph) -> None:
    first, second = build(arch, graph, seed=3).eval(), build(arch, graph, seed=3).eval()
    with torch.no_grad():
        torch.testing.assert_close(first(images()), second(images()), rtol=0, atol=0)
    other = build(arch, graph, seed=4).eval()
    with torch.no_grad():
        assert not torch.allclose(first(images()), other(images()))


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_model_reloads_identical_with_its_graph(arch: str, graph: LabelGraph, tmp_path: Path) -> None:
    model = perturbed(build(arch, graph)).eval()
    save_model(tmp_path, model, model_spec(arch, graph, BACKBONE, IMAGE_SIZE, {}))
    reloaded, spec = load_model(tmp_path)
    assert spec["arch"] == arch
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images()), model(images()), rtol=0, atol=0)
    state = reloaded.state_dict()
    if arch in GRAPH_FREE:
        assert "adjacency" not in state and "label_embeddings" not in state
    else:  # rebuilt from a placeholder graph: the real graph must come back from the state_dict
        np.testing.assert_array_equal(state["adjacency"].numpy(), graph.adjacency)
        np.testing.assert_array_equal(state["label_embeddings"].numpy(), graph.label_embeddings)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_of_one_in_train_and_eval_mode(arch: str, graph: LabelGraph) -> None:
    """BatchNorm2d normalises over B×H×W, so one image (with a map larger than 1×1: 2×2 at
    64 px) trains; no layer normalises over the batch alone. In eval mode, an image's logits do
    not depend on the rest of its batch."""
    model = perturbed(build(arch, graph)).train()
    training_loss(model, images(batch=1)).backward()
    model.eval()
    batch = images(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(model(batch[:1]), model(batch)[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_trains_under_bf16_autocast(arch: str, graph: LabelGraph) -> None:
    """Training on a GPU runs in bf16 autocast (`train.amp`); the same mixed-dtype path on CPU."""
    model = build(arch, graph).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = training_loss(model, images())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# The non-default knobs that change the inference path, as params.yaml sets some of them.
EXPORT_VARIANTS = [(arch, {}) for arch in ARCHS] + [
    ("msrn", {"attention": "cosine", "head": "per_label", "projection": "conv_bn_relu"}),
    ("msrn", {"queries": "learned", "head": "per_label"}),
    ("sgfn", {"attention": "cosine"}),
    ("sgfn", {"global_semantics": "shared"}),
    ("mgsgn", {"reconstruction_stride": 8, "queries": "learned"}),
    ("msshared", {"attention": "channel", "projection": "plain"}),
    ("cmasge", {"feature_stride": 16}),
    ("cmasge", {"scales": 2}),
]


@pytest.mark.parametrize(("arch", "knobs"), EXPORT_VARIANTS)
def test_export_with_dynamic_batch_matches_eager(arch: str, knobs: dict[str, object], graph: LabelGraph) -> None:
    """torch.export (not torch.compile): it is the ahead-of-time graph a server can load without
    the Python model code, it checks in seconds (compile's cold start is ~30 s per model), and
    it fails loudly on data-dependent control flow in `forward`."""
    model = perturbed(build(arch, graph, **knobs)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(model, (images(batch=2),), dynamic_shapes={"images": {0: batch}})
    with torch.no_grad():
        for size in (1, 3):
            sample = images(batch=size, seed=size)
            torch.testing.assert_close(exported.module()(sample), model(sample), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_unknown_knob_names_the_model_section(arch: str, graph: LabelGraph) -> None:
    with pytest.raises(ConfigError) as error:
        build(arch, graph, not_a_knob=1)
    assert error.value.field is not None and error.value.field.startswith(f"models.{arch}")
    assert "not_a_knob" in str(error.value)


@pytest.mark.parametrize(
    ("arch", "knob", "value"),
    [
        ("baseline", "dropout", 1.5),
        ("baseline", "feature_stride", "16"),  # a number, not a string
        ("mlgcn", "pool", "median"),
        ("msrn", "pool_ratio", 0.0),
        ("msrn", "gat_hidden", 512.0),  # a width must be a whole number
        ("msrn", "word_dim", 0),
        ("msrn", "head", "linear"),
        ("msrn", "attention", "euclidean"),
        ("msrn", "label_graph", "random"),
        ("msrn", "queries", "free"),
        ("mlgcn", "label_graph", "shuffle"),
        ("mgsgn", "reconstruction_stride", 4),
        ("sgfn", "global_semantics", "mean"),
        ("msbaseline", "projection", "bn"),
        ("msshared", "attention", "max"),
        ("msshared", "dim", 0),
        ("mgsgn", "top_k", 0),
        ("mgsgn", "map_fusion", "stack"),
        ("sgfn", "combine", "product"),
        ("sgfn", "attention", "euclidean"),
        ("cmasge", "asge_weight", -1.0),
        ("cmasge", "attention_smoothing", -0.5),
        ("cmasge", "feature_stride", 8),
        ("cmasge", "scales", 4),
    ],
)
def test_bad_knob_value_names_the_knob(arch: str, knob: str, value: object, graph: LabelGraph) -> None:
    with pytest.raises(ConfigError) as error:
        build(arch, graph, **{knob: value})
    assert error.value.field == f"models.{arch}.{knob}"


@pytest.mark.parametrize("arch", ARCHS)
def test_non_default_knobs_build_and_train(arch: str, graph: LabelGraph) -> None:
    """Each architecture's non-default knob values build and run (not only the defaults)."""
    knobs = {
        "baseline": {"dropout": 0.5, "feature_stride": 16},
        "mlgcn": {"hidden_dim": 64, "pool": "avg", "feature_stride": 16, "label_graph": "shuffled"},
        "msrn": {
            "semantic_dim": 64,
            "word_dim": 32,
            "gat_hidden": 64,
            "gat_heads": 2,
            "pool_ratio": 0.3,
            "group_loss_weight": 0.5,
            "attention": "dot",
            "projection": "conv_bn_relu",
            "head": "per_label",
            "mlp_hidden": 16,
            "label_graph": "shuffled",
        },
        "mgsgn": {
            "feature_dim": 64,
            "attention_dim": 32,
            "map_fusion": "sum",
            "perspectives": 2,
            "top_k": None,
            "reconstruction_stride": 16,
            "label_graph": "none",
        },
        "sgfn": {
            "semantic_dim": 64,
            "gcn_hidden": 64,
            "fam_heads": 4,
            "global_semantics": "shared",
            "combine": "sum",
            "layer_fusion": "mean",
            "attention": "cosine",
            "label_graph": "shuffled",
        },
        "msbaseline": {"dim": 32, "projection": "plain", "layer_fusion": "sum", "pool": "max"},
        "msshared": {"dim": 32, "projection": "plain", "layer_fusion": "mean", "attention": "channel"},
        "cmasge": {
            "semantic_dim": 32,
            "asge_hidden": 64,
            "asge_weight": 0.0,
            "attention_smoothing": 1.0,
            "feature_stride": 16,
            "label_graph": "none",
        },
    }[arch]
    model = build(arch, graph, **knobs).train()
    training_loss(model, images()).backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_msbaseline_max_pool_reads_each_stage_channel_maximum(graph: LabelGraph) -> None:
    """`pool: max`, the label-agnostic control for MSRN's long per-channel queries: every stage
    head reads each projected channel's maximum over the locations."""
    model = perturbed(build("msbaseline", graph, dim=32, layer_fusion="sum", pool="max")).eval()
    batch = images()
    with torch.no_grad():
        stages = model.project(model.backbone(batch))
        pairs = list(zip(model.heads, stages, strict=True))
        expected = sum(head.fc(stage.amax(dim=(2, 3))) for head, stage in pairs)
        averaged = sum(head.fc(stage.mean(dim=(2, 3))) for head, stage in pairs)
        torch.testing.assert_close(model(batch), expected)
        assert not torch.allclose(expected, averaged)


@pytest.mark.parametrize("arch", ARCHS)
def test_runs_on_tresnet_m(arch: str, graph: LabelGraph) -> None:
    """SGFN's paper backbone; its stages have other widths than ResNet's (128/1024/2048), read
    from timm's feature_info."""
    logits = build(arch, graph, backbone="tresnet_m").eval()(images())
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()


# --- backbone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("resnet18", [128, 256, 512]),
        ("resnet50", [512, 1024, 2048]),
        ("tresnet_m", [128, 1024, 2048]),
        ("convnext_atto", [80, 160, 320]),
    ],
)
def test_backbone_picks_stages_by_stride(name: str, channels: list[int]) -> None:
    """ResNets number stride 8 as level 2, ConvNeXt as level 1: stages are chosen by stride."""
    backbone = Backbone(name, strides=(8, 16, 32))
    assert backbone.channels == channels
    maps = backbone(images())
    assert [m.shape[1] for m in maps] == channels
    assert [IMAGE_SIZE // m.shape[-1] for m in maps] == [8, 16, 32]


def test_dilated_backbone_returns_the_deepest_stage_at_stride_16() -> None:
    """CMA-SGE's `feature_stride: 16`: the last stage (512 channels on resnet18) twice as fine."""
    backbone = Backbone("resnet18", strides=(16,), output_stride=16)
    (deepest,) = backbone(images())
    assert backbone.channels == [512] and deepest.shape[-1] == IMAGE_SIZE // 16


def test_backbone_runs_channels_last_and_hands_on_contiguous_maps_equal_to_nchw() -> None:
    """The body's conv weights are NHWC and a saved model rebuilds into that layout; the heads get
    contiguous maps with the values an NCHW body computes."""
    torch.manual_seed(0)
    backbone = Backbone("resnet18", strides=(8, 16, 32)).eval()
    assert backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    rebuilt = Backbone("resnet18", strides=(8, 16, 32)).eval()
    rebuilt.load_state_dict(backbone.state_dict())
    assert rebuilt.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    batch = images()
    with torch.no_grad():
        nhwc = backbone(batch)
        backbone.use_channels_last(False)
        assert backbone.body.conv1.weight.is_contiguous()
        nchw = backbone(batch)
    for fast, plain, again in zip(nhwc, nchw, rebuilt(batch), strict=True):
        assert fast.is_contiguous() and plain.is_contiguous()
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(again, fast)


def test_backbone_that_cannot_dilate_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        Backbone("tresnet_m", strides=(16,), output_stride=16)
    assert error.value.field == "train.backbone" and "feature_stride: 32" in error.value.fix


def test_backbone_without_the_strides_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        Backbone("vit_tiny_patch16_224", strides=(8, 16, 32))
    assert error.value.field == "train.backbone"


# --- shared layers: the mechanisms the papers rely on --------------------------------------


def test_label_guided_attention_softmax_averages_locations() -> None:
    """Softmax weights sum to one over locations: a constant map comes back unchanged."""
    labels = torch.randn(5, 8)
    constant = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 3, 3)
    expected = constant[:, :, 0, 0].unsqueeze(1).expand(2, 5, 8)
    torch.testing.assert_close(LabelGuidedAttention()(labels, constant), expected)


def test_cosine_softmax_attention_ignores_how_long_a_query_grows() -> None:
    """The `attention: cosine` knob: a dot-product query sharpens its softmax by growing (the
    collapsed MSRN/SGFN queries reached norms of 90–900); a cosine one does not, and only the
    learned temperature, capped, sets how sharp the weights are."""
    labels, keys = torch.randn(3, 8), torch.randn(2, 8, 3, 3)
    cosine = LabelGuidedAttention("cosine")
    torch.testing.assert_close(cosine(100.0 * labels, keys), cosine(labels, keys))
    dot = LabelGuidedAttention("dot")
    assert not torch.allclose(dot(100.0 * labels, keys), dot(labels, keys))

    assert [name for name, _ in cosine.named_parameters()] == ["log_temperature"]
    assert not list(LabelGuidedAttention("cosine", "relu").parameters())  # CMA's weights are the paper's
    keys = torch.tensor([[1.0, 1.0], [0.0, 0.01]]).view(1, 2, 1, 2)  # cosines 0 and ~0.01 with [0, 1]
    values = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    with torch.no_grad():
        cosine.log_temperature.fill_(math.log(1e4))  # far beyond the cap
    pooled = cosine(torch.tensor([[0.0, 1.0]]), keys, values)
    gap = F.cosine_similarity(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.01]), dim=0)
    expected = torch.stack([torch.tensor(0.0), gap * LabelGuidedAttention.MAX_TEMPERATURE]).softmax(0)[1]
    torch.testing.assert_close(pooled[0, 0, 0], expected)


def test_label_guided_attention_relu_pools_visual_values_where_the_label_matches() -> None:
    """CMA: keys decide where, values what; a label dissimilar to every location pools nothing."""
    keys = torch.zeros(1, 2, 1, 2)
    keys[0, 0, 0, 0] = 1.0  # location 0 points along axis 0, location 1 along axis 1
    keys[0, 1, 0, 1] = 1.0
    values = torch.tensor([10.0, 20.0]).view(1, 1, 1, 2)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    pooled = LabelGuidedAttention("cosine", "relu")(labels, keys, values)
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor([10.0, 20.0, 0.0]), atol=1e-4, rtol=0)


def test_relu_attention_smoothing_bounds_the_gradient_of_a_barely_matching_label() -> None:
    """CMA-SGE's fault on 3×3 maps: a label whose cosines are barely positive at two locations
    got a gradient of ~1/(their sum) — a spike that inflated Adam's second moments for the whole
    run and froze the backbone. Smoothing bounds it; a label matching nowhere then pools the
    map's average instead of a zero vector."""

    def keys_gradient(smoothing: float) -> float:
        keys = torch.tensor([[1e-4, 2e-4, -1.0], [1.0, 1.0, 1.0]]).view(1, 2, 1, 3).requires_grad_(True)
        values = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
        attend = LabelGuidedAttention("cosine", "relu", smoothing=smoothing)
        attend(torch.tensor([[1.0, 0.0]]), keys, values).sum().backward()
        return float(keys.grad.norm())

    assert keys_gradient(0.0) > 1e3
    assert keys_gradient(1.0) < 2.0
    keys = torch.eye(2).view(1, 2, 1, 2)
    values = torch.tensor([10.0, 20.0]).view(1, 1, 1, 2)
    pooled = LabelGuidedAttention("cosine", "relu", smoothing=1.0)(torch.tensor([[-1.0, -1.0]]), keys, values)
    torch.testing.assert_close(pooled[0, 0], torch.tensor([15.0]))


def test_cmasge_label_embeddings_start_apart_like_their_words() -> None:
    """Biased ASGE layers started every label at nearly one embedding (mean off-diagonal cosine
    0.91 from unit word vectors at 0.27), so all labels attended to the same locations."""
    wide = synthetic_label_graph(NUM_CLASSES, embedding_dim=384, num_images=400)
    model = build("cmasge", wide)
    off_diagonal = ~torch.eye(NUM_CLASSES, dtype=torch.bool)

    def mean_cosine(vectors: torch.Tensor) -> float:
        unit = F.normalize(vectors, dim=-1)
        return float((unit @ unit.t())[off_diagonal].mean())

    with torch.no_grad():
        start = mean_cosine(model.asge(model.label_embeddings))
    assert abs(start - mean_cosine(torch.from_numpy(wide.label_embeddings))) < 0.25


@pytest.mark.parametrize(("scales", "map_sides"), [(1, [2]), (2, [4, 2]), (3, [8, 4, 2])])
def test_ms_cma_attends_on_each_stage_with_the_same_label_embeddings(
    scales: int, map_sides: list[int], graph: LabelGraph
) -> None:
    """MS-CMA (`scales` > 1) runs the cross-modality attention on stages 2–4 as asked, every
    stage queried by the one set of ASGE label embeddings, and every added branch is trained."""
    model = build("cmasge", graph, scales=scales).train()
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.cma.register_forward_pre_hook(lambda _, args: calls.append((args[0], args[1])))
    training_loss(model, images()).backward()
    assert [keys.shape[-1] for _, keys in calls] == map_sides  # 64 px at strides 8/16/32
    assert all(labels is calls[0][0] for labels, _ in calls)
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_ms_cma_refuses_a_dilated_last_stage(graph: LabelGraph) -> None:
    with pytest.raises(ConfigError) as error:
        build("cmasge", graph, scales=2, feature_stride=16)
    assert error.value.field == "models.cmasge.scales" and "feature_stride" in str(error.value)


@pytest.mark.parametrize(
    ("arch", "knobs", "field"),
    [
        ("msrn", {"semantic_dim": 500, "gat_heads": 3}, "models.msrn.gat_heads"),
        ("msrn", {"gat_hidden": 301, "gat_heads": 2}, "models.msrn.gat_heads"),
        ("mgsgn", {"attention_dim": 130, "attention_heads": 4}, "models.mgsgn.attention_heads"),
    ],
)
def test_widths_that_do_not_split_over_heads_name_the_heads(
    arch: str, knobs: dict[str, int], field: str, graph: LabelGraph
) -> None:
    with pytest.raises(ConfigError) as error:
        build(arch, graph, **knobs)
    assert error.value.field == field and "multiple" in str(error.value)


def test_graph_attention_ignores_labels_outside_the_graph() -> None:
    adjacency = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    layer = GraphAttention(4, 8, heads=2)
    nodes = torch.randn(3, 4)
    changed = nodes.clone()
    changed[2] = torch.randn(4)
    torch.testing.assert_close(layer(nodes, adjacency)[:2], layer(changed, adjacency)[:2])
    assert not torch.allclose(layer(nodes, adjacency)[2], layer(changed, adjacency)[2])


def test_multi_perspective_graph_is_sparse_and_row_normalised() -> None:
    torch.manual_seed(0)
    dynamic = MultiPerspectiveGraph(dim=16, perspectives=3, top_k=4)(torch.rand(2, 9, 16))
    assert dynamic.shape == (2, 9, 9)
    assert ((dynamic > 0).sum(-1) <= 4).all()
    torch.testing.assert_close(dynamic.sum(-1), torch.ones(2, 9), atol=1e-4, rtol=0)


def test_diffpool_pools_labels_into_group_queries_and_their_loss_prefers_the_own_group() -> None:
    adjacency = torch.block_diag(torch.ones(2, 2), torch.ones(2, 2)) / 2
    groups, assignment = DiffPool(dim=8, num_groups=3)(torch.randn(4, 8), adjacency)
    assert groups.shape == (3, 8) and assignment.shape == (4, 3)
    torch.testing.assert_close(assignment.sum(-1), torch.ones(4))
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    groups = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    own = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    swapped = own.flip(-1)
    assert DiffPool.group_distance(labels, groups, own) < DiffPool.group_distance(labels, groups, swapped)
    torch.testing.assert_close(DiffPool.group_distance(labels, groups, own), torch.tensor(0.1))


def test_asge_loss_fits_embeddings_to_the_adjacency(graph: LabelGraph) -> None:
    torch.manual_seed(0)
    adjacency = torch.from_numpy(graph.adjacency)
    encoder = AdjacencySimilarityEmbedding(EMBEDDING_DIM, 32, 16)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    word_embeddings = torch.from_numpy(graph.label_embeddings)
    with torch.no_grad():
        start = float(AdjacencySimilarityEmbedding.loss(encoder(word_embeddings), adjacency))
    for _ in range(100):
        optimizer.zero_grad()
        AdjacencySimilarityEmbedding.loss(encoder(word_embeddings), adjacency).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(AdjacencySimilarityEmbedding.loss(encoder(word_embeddings), adjacency)) < 0.25 * start


def test_learned_fusion_starts_as_the_mean() -> None:
    branches = [torch.ones(2, 3), 3 * torch.ones(2, 3)]
    torch.testing.assert_close(WeightedSum(2, "learned")(branches), 2 * torch.ones(2, 3))
    torch.testing.assert_close(WeightedSum(2, "sum")(branches), 4 * torch.ones(2, 3))


# --- controls and ablations: what the label graph and label queries add ---------------------


def test_shuffled_label_graph_moves_every_label_to_another_node_consistently(graph: LabelGraph) -> None:
    adjacency, embeddings = ablated_graph_inputs(graph, "shuffled")
    # Each label got the embedding of exactly one other label...
    matches = (embeddings[:, None, :] == graph.label_embeddings[None, :, :]).all(-1)
    assert (matches.sum(1) == 1).all()
    partner = matches.argmax(1)
    assert (partner != np.arange(NUM_CLASSES)).all()
    # ...and the edges of that label, so the graph is the real one with its labels renamed.
    np.testing.assert_array_equal(adjacency, graph.adjacency[np.ix_(partner, partner)])
    again, _ = ablated_graph_inputs(graph, "shuffled")
    np.testing.assert_array_equal(again, adjacency)  # fixed, so a rebuilt model gets the same


def test_no_label_graph_is_the_identity_with_distinct_meaningless_vectors(graph: LabelGraph) -> None:
    adjacency, embeddings = ablated_graph_inputs(graph, "none")
    np.testing.assert_array_equal(adjacency, np.eye(NUM_CLASSES, dtype=np.float32))
    np.testing.assert_allclose(embeddings @ embeddings.T, np.eye(NUM_CLASSES), atol=1e-5)
    other = synthetic_label_graph(NUM_CLASSES, embedding_dim=EMBEDDING_DIM, num_images=400, seed=7)
    np.testing.assert_array_equal(ablated_graph_inputs(other, "none")[1], embeddings)  # nothing of the graph left


@pytest.mark.parametrize("arch", GRAPH_MODELS)
def test_ablated_label_graph_is_what_the_model_keeps_and_saves(arch: str, graph: LabelGraph, tmp_path: Path) -> None:
    model = perturbed(build(arch, graph, label_graph="shuffled")).eval()
    adjacency, embeddings = ablated_graph_inputs(graph, "shuffled")
    np.testing.assert_array_equal(model.adjacency.numpy(), adjacency)
    save_model(tmp_path, model, model_spec(arch, graph, BACKBONE, IMAGE_SIZE, {"label_graph": "shuffled"}))
    reloaded, _ = load_model(tmp_path)
    np.testing.assert_array_equal(reloaded.label_embeddings.numpy(), embeddings)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images()), model(images()), rtol=0, atol=0)


@pytest.mark.parametrize("arch", QUERY_MODELS)
def test_learned_queries_do_not_read_the_label_embeddings(arch: str, graph: LabelGraph) -> None:
    """`queries: learned` is the control without graph-derived queries: the word embeddings must
    not reach the output, while with `semantic` queries they do."""
    for queries, reaches in (("learned", False), ("semantic", True)):
        model = perturbed(build(arch, graph, queries=queries)).eval()
        with torch.no_grad():
            before = model(images())
            model.label_embeddings.copy_(torch.randn_like(model.label_embeddings))
            assert torch.allclose(model(images()), before) is not reaches, queries


@pytest.mark.parametrize(
    ("arch", "knobs", "query_count"),
    [
        ("msrn", {}, NUM_CLASSES + 2),  # K = ⌈0.2 · 10⌉ groups beside the labels
        ("msrn", {"queries": "learned"}, NUM_CLASSES + 2),
        ("sgfn", {}, NUM_CLASSES + 2),
        ("sgfn", {"global_semantics": "shared"}, NUM_CLASSES),
        ("sgfn", {"global_semantics": "none"}, NUM_CLASSES),
        ("msshared", {}, 1),
    ],
)
def test_attention_queries_are_the_labels_then_their_groups(
    arch: str, knobs: dict[str, object], query_count: int, graph: LabelGraph
) -> None:
    model = build(arch, graph, **knobs).eval()
    seen: list[int] = []
    for module in model.modules():
        if isinstance(module, LabelGuidedAttention):
            module.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[-2]))
    with torch.no_grad():
        model(images())
    assert seen == [query_count] * 3  # one attention per stage, stages 2–4


def test_msrn_follows_its_reference_code_by_default(graph: LabelGraph) -> None:
    model = build("msrn", graph)
    assert model.attend.similarity == "channel"
    assert all(
        isinstance(projection, nn.Conv2d) for projection in model.project.projections
    )  # plain, keys may be negative
    assert all(layer.residual and layer.heads == 1 for layer in model.semantics.local.layers)
    assert model.semantics.local.activate_last
    assert isinstance(model.head, nn.Sequential)  # tanh → MLP over every query of every stage
    assert model.head[1].in_features == 3 * 512 * (NUM_CLASSES + 2)
    loss = model.auxiliary_loss()
    assert loss > 0 and loss.requires_grad  # the group loss, weighted 1e-4


def test_channel_attention_pools_each_channel_with_its_own_weights() -> None:
    """MSRN's reference attention: channel 0, weighed up, is pooled near its peak; channel 1,
    weighed down, near its minimum; the weights of each channel sum to one."""
    keys = torch.tensor([[0.0, 1.0, 5.0], [3.0, -2.0, 0.0]]).view(1, 2, 1, 3)
    attend = LabelGuidedAttention("channel")
    pooled = attend(torch.tensor([[20.0, -20.0]]), keys)
    torch.testing.assert_close(pooled[0, 0], torch.tensor([5.0, -2.0]), atol=1e-3, rtol=0)
    weights = attend.weights(torch.tensor([[20.0, -20.0]]), keys)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 1))
    with pytest.raises(ValueError):
        attend(torch.ones(1, 2), keys, values=keys)


def test_short_channel_queries_pool_the_mean_plus_query_times_spatial_variance() -> None:
    """Why MSRN's queries can collapse without losing anything (models.msrn.word_norm): while q·k varies
    little over the locations, the pooled channel is its mean plus q times its variance over the
    locations, linear in q, so a label's classifier weights absorb its query."""
    torch.manual_seed(0)
    keys = torch.randn(2, 8, 3, 3)
    labels = 1e-3 * torch.randn(5, 8)
    pooled = LabelGuidedAttention("channel")(labels, keys)
    flat = keys.flatten(2)
    expected = flat.mean(-1).unsqueeze(1) + labels * flat.var(-1, unbiased=False).unsqueeze(1)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=0)


def broadcast_channel_pool(labels: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Per-channel attention pooling as its definition reads, every `[B, C, D, N]` weight at once."""
    scores = labels.unsqueeze(-1) * keys.unsqueeze(1)
    return (scores.softmax(dim=-1) * keys.unsqueeze(1)).sum(dim=-1)


@pytest.mark.parametrize("batched_labels", [False, True])
@pytest.mark.parametrize("chunk_elements", [1 << 21, 40])  # one chunk; one image and a few labels per chunk
def test_chunked_channel_pooling_equals_its_definition_with_its_gradients(
    batched_labels: bool, chunk_elements: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ChannelAttentionPool.CHUNK_ELEMENTS, "cpu", chunk_elements)
    generator = torch.Generator().manual_seed(0)
    shape = (3, 5, 4) if batched_labels else (5, 4)
    labels = torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_()
    keys = torch.randn(3, 4, 6, dtype=torch.float64, generator=generator).requires_grad_()
    assert torch.autograd.gradcheck(ChannelAttentionPool.apply, (labels, keys))
    expected = broadcast_channel_pool(labels, keys)
    pooled = ChannelAttentionPool.apply(labels, keys)
    torch.testing.assert_close(pooled, expected)
    upstream = torch.randn(expected.shape, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(
        torch.autograd.grad(pooled, (labels, keys), upstream),
        torch.autograd.grad(expected, (labels, keys), upstream),
    )


def test_channel_pooling_stays_finite_for_sharp_labels() -> None:
    """Labels of norm 10³ make `exp(l·k)` overflow float32 unless the max is taken out first."""
    generator = torch.Generator().manual_seed(1)
    labels = (1000 * torch.randn(7, 16, generator=generator)).requires_grad_()
    keys = torch.randn(2, 16, 9, generator=generator).requires_grad_()
    pooled = ChannelAttentionPool.apply(labels, keys)
    torch.testing.assert_close(pooled, broadcast_channel_pool(labels, keys))
    pooled.sum().backward()
    assert torch.isfinite(labels.grad).all() and torch.isfinite(keys.grad).all()


def test_residual_graph_attention_keeps_a_labels_own_features() -> None:
    adjacency = torch.ones(3, 3)
    torch.manual_seed(0)
    plain = GraphAttention(4, 8, heads=2)
    residual = GraphAttention(4, 8, heads=2, residual=True)
    residual.load_state_dict(plain.state_dict())
    nodes = torch.randn(3, 4)
    torch.testing.assert_close(residual(nodes, adjacency) - plain(nodes, adjacency), plain.project(nodes))


def test_mgsgn_label_queries_have_no_bias_and_a_finer_reconstruction_is_read(graph: LabelGraph) -> None:
    model = build("mgsgn", graph, reconstruction_stride=8).eval()
    assert model.label_queries.bias is None
    sides: list[int] = []
    model.attend.register_forward_pre_hook(lambda _, args: sides.append(args[1].shape[-1]))
    with torch.no_grad():
        model(images())
    assert sides == [IMAGE_SIZE // 8]
