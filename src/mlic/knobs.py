"""Architecture knobs: one typed model per architecture, the `models.<arch>` section of params.yaml.

Each class holds an architecture's knobs with their defaults and what they do; `Config.models`
is made of them, so a mistyped or unknown knob fails when params.yaml is read, naming
`models.<arch>.<knob>`, long before a layer is built. Defaults are the paper's or its reference
code's values wherever they state one; params.yaml departs from them only where the embedded
benchmark chose otherwise on val. The choice types (`Similarity`, ...) are written here once and
imported by the layers that implement them.

This module imports neither torch nor timm, so reading params.yaml stays cheap (`mlic graph`).
`mlic knobs` prints the knob tables; `mlic knobs --docs docs/models.md` rewrites the ones the
model docs carry, and a test fails when they drift from these classes or from params.yaml.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from mlic.errors import ConfigError

#: What a graph model is given as its label graph (the `label_graph` knob of every graph model):
#: the real co-occurrence graph and word embeddings; the same graph and embeddings with the
#: labels shuffled (a graph as structured as the real one, attached to the wrong labels); or
#: none (no edges, and label vectors that are distinct but carry no word meaning). The last two
#: are ablations: what a model keeps of its score without them is not owed to the label graph.
LabelGraphInput = Literal["cooccurrence", "shuffled", "none"]
#: Where label queries come from: the label graph, or a free learned vector per label (a control).
QuerySource = Literal["semantic", "learned"]
#: The stride of the one map a single-map model (baseline, ML-GCN, CMA-SGE) reads: 32 is the
#: last stage as the papers use it; 16 dilates that stage, so the same channels come on a map
#: twice as fine (a 6×6 map at 96 px instead of 3×3), for about 1.5× the training time
#: (resnet18 at 96 px, docs/models.md).
FeatureStride = Literal[32, 16]
#: How several branches (layers, scales) are combined: sum, mean, or learned softmax weights.
BranchFusion = Literal["sum", "mean", "learned"]
#: How a shared vector joins per-label vectors: added, or concatenated and projected.
SemanticCombine = Literal["sum", "concat"]
#: Global pooling of a feature map.
PoolKind = Literal["avg", "max"]
#: Label-guided attention: dot product, cosine similarity, or one softmax per channel.
Similarity = Literal["dot", "cosine", "channel"]
#: How a stage is brought to the common width: a plain 1×1 conv with bias (MSRN's reference),
#: or 1×1 conv → BN → ReLU (every key non-negative, so a query can only weigh channels up).
Projection = Literal["plain", "conv_bn_relu"]
#: SGFN's "global semantics": DiffPool groups as extra queries, one shared vector, or none.
GlobalSemantics = Literal["groups", "shared", "none"]
#: MSRN's prediction head: the reference MLP over all query features, or one dot product per label.
MsrnHead = Literal["mlp", "per_label"]
#: MGSGN's fusion of the attention maps of its perspectives.
MapFusion = Literal["concat", "sum"]
#: Stride of the map MGSGN reconstructs its label features on (finer = more locations).
ReconstructionStride = Literal[32, 16, 8]
#: How many backbone stages CMA reads, deepest first: 1 is CMA on the last map, 2 and 3 are
#: MS-CMA on stages 3–4 and 2–4.
CmaScales = Literal[1, 2, 3]

#: Widths, heads, groups: whole numbers of at least 1 (`512.0` or `true` is refused, not rounded).
Count = Annotated[int, Field(ge=1, strict=True)]
#: Loss weights: 0 turns the term off.
Weight = Annotated[float, Field(ge=0.0)]


class Knobs(BaseModel):
    """Base of every architecture's knobs: unknown keys are errors; values never change after
    validation (a trained model's knobs are saved beside its weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, protected_namespaces=())


class GraphKnobs(Knobs):
    """Knobs every model that reads the label graph has."""

    label_graph: LabelGraphInput = "cooccurrence"
    """The ablation every graph model has ("Controls" below): `shuffled` hands every label another label's node,
    `none` removes the graph."""


class QueryKnobs(GraphKnobs):
    """Knobs every model with label queries has."""

    queries: QuerySource = "semantic"
    """The control every query model has ("Controls" below): `learned` replaces the graph-derived label queries by
    free vectors."""


class BaselineKnobs(Knobs):
    dropout: float = Field(0.0, ge=0.0, le=1.0)
    """Dropout before the linear layer."""
    feature_stride: FeatureStride = 32
    """16 reads a dilated last stage, to compare with a single-map graph model reading the same map."""


class MlgcnKnobs(GraphKnobs):
    hidden_dim: Count = 1024
    """Hidden GCN width (the paper's)."""
    pool: PoolKind = "max"
    """Global pool of the last map: `max` (the paper's) or `avg`."""
    feature_stride: FeatureStride = 32
    """16 reads a dilated last stage (timm `output_stride`): the same channels on a map twice as fine."""


class MsrnKnobs(QueryKnobs):
    semantic_dim: Count = 512
    """Label/group query and projected-map width."""
    word_dim: Count = 256
    """The linear layer on the word vectors."""
    word_norm: float = Field(1.0, gt=0.0)
    """Length the label word vectors are scaled to before that layer. The graph step makes every vector unit length;
    the reference feeds raw GloVe vectors, several times longer, so there the word signal outweighs the layer's bias.
    At 1 the bias is as large as the signal, the queries start alike and short, and the per-channel attention pools
    little more than each channel's mean; params.yaml's 600 was chosen on val (docs/models.md, MSRN)."""
    gat_hidden: Count = 300
    """Hidden GAT width."""
    gat_heads: Count = 1
    """GAT heads (`semantic_dim` and `gat_hidden` must divide by it); DiffPool's assignment layer always has one."""
    pool_ratio: float = Field(0.2, gt=0.0, le=1.0)
    """K = ⌈ratio·C⌉ groups: 16 on COCO, 4 on VOC (the reference's `int()` gives the same), 5 on the demo's 21
    labels."""
    group_loss_weight: Weight = 1e-4
    """Weight of the group loss, which keeps each label near the group it is assigned to."""
    attention: Similarity = "channel"
    """`channel` (per-channel softmax, the reference's), `dot` (one map per label, scaled dot product), `cosine` (one
    map per label, cosine × a learned temperature)."""
    projection: Projection = "plain"
    """`plain` 1×1 conv (the reference's), or `conv_bn_relu` (every key non-negative)."""
    head: MsrnHead = "mlp"
    """`mlp` (the reference's tanh → MLP over all C + K query features), or `per_label` (its commented-out
    alternative: each label's features beside its groups' features mixed through the assignment, tanh, one dot
    product per label)."""
    mlp_hidden: Count = 2048
    """Hidden width of the MLP head; its first layer holds 3·`semantic_dim`·(C+K)·`mlp_hidden` weights (82 M on the
    demo, 302 M on COCO)."""

    @field_validator("gat_heads")
    @classmethod
    def _widths_split_over_heads(cls, heads: int, info: ValidationInfo) -> int:
        return _divides(heads, info, "semantic_dim", "gat_hidden")


class MgsgnKnobs(QueryKnobs):
    feature_dim: Count = 512
    """Width of projected maps and label representations."""
    attention_dim: Count = 128
    """Inner width of the cross-layer attention."""
    attention_heads: Count = 4
    """Heads of the cross-layer attention (`attention_dim` must divide by it)."""
    map_fusion: MapFusion = "concat"
    """Fusing reconstructed maps: `concat` (→ 1×1 conv–BN–ReLU) or `sum`."""
    channel_reduction: Count = 16
    """Bottleneck ratio of both channel-attention MLPs (SE's 16)."""
    perspectives: Count = 4
    """P, the attention perspectives per label."""
    top_k: int | None = Field(8, ge=1, strict=True)
    """Neighbours kept per label in the dynamic graph (itself included); `null` = dense."""
    gcn_hidden: Count = 512
    """Hidden width of the GCN over the mixed graph."""
    attention: Similarity = "dot"
    """Scores of the attention that gives `V`: `dot`, `cosine` (× a learned temperature) or `channel`, as MSRN's."""
    reconstruction_stride: ReconstructionStride = 32
    """The grid the deepest map is rebuilt on: 32 is its own (3×3 at 96 px); 16 and 8 upsample it to a finer stage's
    grid first, so `V` is attended over 6×6 or 12×12 locations."""

    @field_validator("attention_heads")
    @classmethod
    def _width_splits_over_heads(cls, heads: int, info: ValidationInfo) -> int:
        return _divides(heads, info, "attention_dim")


class SgfnKnobs(QueryKnobs):
    semantic_dim: Count = 512
    """Label semantics and projected-map width."""
    gcn_hidden: Count = 1024
    """Hidden GCN width (as ML-GCN)."""
    fam_reduction: Count = 2
    """FAM inner width = channels / this (the non-local block's ½)."""
    fam_heads: Count = 1
    """FAM heads (non-local is single-head)."""
    global_semantics: GlobalSemantics = "groups"
    """The reading of "global": DiffPool `groups` as extra queries, one `shared` vector joined to every label, or
    `none`."""
    pool_ratio: float = Field(0.2, gt=0.0, le=1.0)
    """Groups of the `groups` reading: K = ⌈ratio·C⌉, as MSRN's."""
    combine: SemanticCombine = "concat"
    """The `shared` reading's fusion: `concat` (→ linear) or `sum`."""
    layer_fusion: BranchFusion = "learned"
    """Fusion of per-layer logits: `learned` (the paper's), `sum`, `mean`."""
    attention: Similarity = "dot"
    """Label-guided attention scores: `dot` (the papers' `L·X`), `cosine` (× a learned temperature, capped at 100),
    or `channel` (MSRN's per-channel form)."""


class CmasgeKnobs(QueryKnobs):
    semantic_dim: Count = 256
    """Width of the label embeddings / semantic space."""
    asge_hidden: Count = 512
    """Hidden width of the ASGE encoder."""
    asge_weight: Weight = 1.0
    """Weight of the ASGE loss (0 = embeddings learned only through classification)."""
    attention_smoothing: Weight = 0.0
    """Evidence spread evenly over the map before the ReLU'd cosines are normalised: 0 is the paper's plain
    normalisation; 1.0 (params.yaml) keeps the attention trainable on small maps."""
    feature_stride: FeatureStride = 32
    """The map CMA reads: 32 is the paper's last map; 16 dilates the last stage (timm `output_stride`), so the same
    channels come on a map twice as fine; backbones without `output_stride` (TResNet) cannot."""
    scales: CmaScales = 1
    """How many stages CMA reads, deepest first: 1 = the paper's CMA on the last map; 2 = MS-CMA on stages 3–4; 3 =
    stages 2–4. Not combined with `feature_stride: 16`."""

    @field_validator("scales")
    @classmethod
    def _dilation_is_single_scale(cls, scales: int, info: ValidationInfo) -> int:
        stride = info.data.get("feature_stride", 32)
        if scales > 1 and stride != 32:
            raise ValueError(
                f"feature_stride {stride} dilates the last stage, where MS-CMA (scales {scales}) already reads "
                "the stage before it: set scales 1 to keep the dilated map, or feature_stride 32"
            )
        return scales


class MultiScaleControlKnobs(Knobs):
    """Knobs both label-agnostic multi-scale controls have."""

    dim: Count = 512
    """Width every stage is projected to."""
    projection: Projection = "conv_bn_relu"
    """Projection of stages 2–4: `conv_bn_relu` (as SGFN and MGSGN), `plain` (as MSRN's reference)."""
    layer_fusion: BranchFusion = "learned"
    """Fusion of the stages' logits."""


class MsbaselineKnobs(MultiScaleControlKnobs):
    pool: PoolKind = "avg"
    """Global pool of every projected stage. `max` is what MSRN's per-channel attention tends to when its queries
    are long and share one sign pattern (each channel's softmax over the locations turns into its maximum)."""


class MssharedKnobs(MultiScaleControlKnobs):
    attention: Similarity = "cosine"
    """Attention of the one shared query: set it to the research model's under test."""


def _divides(heads: int, info: ValidationInfo, *widths: str) -> int:
    """Multi-head layers split a width evenly over heads; validated on the heads knob, which
    comes after the widths it splits (a width that failed its own check is skipped)."""
    for width in widths:
        value = info.data.get(width)
        if value is not None and value % heads:
            raise ValueError(f"{width}={value} does not split over {heads} heads: make {width} a multiple of it")
    return heads


class ModelsKnobs(BaseModel):
    """The `models:` section: every architecture's knobs, each defaulting to its class's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    baseline: BaselineKnobs = Field(default_factory=BaselineKnobs)
    """One head on the last stage: the pixels-only reference."""
    mlgcn: MlgcnKnobs = Field(default_factory=MlgcnKnobs)
    """ML-GCN: label classifiers produced by a GCN over the label graph."""
    msrn: MsrnKnobs = Field(default_factory=MsrnKnobs)
    """MSRN: GAT label queries and DiffPool group queries attend stages 2–4."""
    mgsgn: MgsgnKnobs = Field(default_factory=MgsgnKnobs)
    """MGSGN: multi-perspective attention and a dynamic label graph."""
    sgfn: SgfnKnobs = Field(default_factory=SgfnKnobs)
    """SGFN: semantic-guided fusion of stages 2–4 with global semantics."""
    cmasge: CmasgeKnobs = Field(default_factory=CmasgeKnobs)
    """CMA-SGE: category-wise attention guided by fitted label embeddings."""
    msbaseline: MsbaselineKnobs = Field(default_factory=MsbaselineKnobs)
    """Control: stages 2–4 average-pooled, no attention."""
    msshared: MssharedKnobs = Field(default_factory=MssharedKnobs)
    """Control: stages 2–4 pooled by one learned query shared by all labels."""

    def of(self, arch: str) -> Knobs:
        knobs_class(arch)
        return getattr(self, arch)


def architecture_names() -> list[str]:
    """Every architecture that has a knobs class, in the order of the `models:` section."""
    return list(ModelsKnobs.model_fields)


def knobs_class(arch: str) -> type[Knobs]:
    """The knobs of `arch`; an architecture without knobs here is unknown."""
    if arch not in ModelsKnobs.model_fields:
        raise ConfigError(
            f"unknown architecture '{arch}'",
            field="architectures",
            fix=f"choose from {', '.join(architecture_names())}",
        )
    annotation = ModelsKnobs.model_fields[arch].annotation
    assert isinstance(annotation, type) and issubclass(annotation, Knobs)
    return annotation


def _choices(annotation: Any) -> str:
    """`Literal` and `X | None` types as the values a user writes in params.yaml."""
    args = get_args(annotation)
    if not args:
        return {int: "integer", float: "number"}.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if all(not isinstance(arg, type) for arg in args):
        return " \\| ".join(f"`{arg}`" for arg in args)
    return " or ".join("`null`" if arg is type(None) else _choices(arg) for arg in args)


def _bounds(field: FieldInfo) -> str:
    """The field's numeric constraints, written as a reader would: ` ≥ 1`, ` in [0, 1]`."""
    limit = {
        name: getattr(item, name) for item in field.metadata for name in ("ge", "gt", "le", "lt") if hasattr(item, name)
    }
    low = f"[{limit['ge']}" if "ge" in limit else f"({limit['gt']}" if "gt" in limit else ""
    high = f"{limit['le']}]" if "le" in limit else f"{limit['lt']})" if "lt" in limit else ""
    if low and high:
        return f" in {low}, {high}"
    return f" ≥ {limit['ge']}" if "ge" in limit else f" > {limit['gt']}" if "gt" in limit else ""


def _shown(value: object) -> str:
    return "`null`" if value is None else f"`{value}`"


def knob_table(arch: str, configured: Knobs | None = None) -> str:
    """One architecture's knobs as a markdown table: its own knobs first, then the controls it
    shares with every graph model; the last column is params.yaml's value where it departs from
    the default."""
    fields = knobs_class(arch).model_fields
    shared = [name for name in fields if name in QueryKnobs.model_fields]
    rows = ["| knob | values | default | params.yaml | what it does |", "|---|---|---|---|---|"]
    for name in [*(name for name in fields if name not in shared), *shared]:
        field = fields[name]
        value = getattr(configured, name) if configured is not None else field.default
        departs = _shown(value) if value != field.default else ""
        choices = _choices(field.annotation)
        nullable = choices.endswith(" or `null`")
        values = choices.removesuffix(" or `null`") + _bounds(field) + (" or `null`" if nullable else "")
        meaning = " ".join((field.description or "").split())
        rows.append(f"| `{name}` | {values} | {_shown(field.default)} | {departs} | {meaning} |")
    return "\n".join(rows)


#: Where docs carry an architecture's table: between these two lines, rewritten by `mlic knobs --docs`.
KNOB_BLOCK = re.compile(r"(<!-- knobs: (?P<arch>\w+) -->\n).*?(<!-- /knobs -->)", re.S)


def with_knob_tables(text: str, configured: ModelsKnobs) -> str:
    """`text` with every knob block replaced by the table generated from the classes and params."""
    return KNOB_BLOCK.sub(lambda m: f"{m[1]}{knob_table(m['arch'], configured.of(m['arch']))}\n{m[3]}", text)
