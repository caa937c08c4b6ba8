"""Speed and memory of every architecture, relative to the bare backbone + linear head.

    python bench/speed.py                      # demo size from params.yaml (CPU), then CUDA if present
    python bench/speed.py --image-size 128 --rounds 20
    python bench/speed.py --flops              # parameters and FLOPs at 448 px on ResNet-101 (docs/models.md)

Absolute images/s on a shared CPU say little; the ratio to the `baseline` model (backbone →
global pool → linear), timed in the same run with measurements interleaved round by round, is
what we compare: a graph head is "light" when its ratio stays near 1. The same rounds time each
model's `torch.export` program (dynamic batch, what a server could load instead of the eager
module): "exported × eager" above 1 would mean serving should switch to it. A twin of each model
with its backbone in NCHW is trained in the same rounds: "NHWC step × NCHW" below 1 is what the
default channels-last backbone saves. Each figure is the best of the rounds (other processes
only ever add time, so the minimum is the least disturbed measurement; medians drift with the
machine's load). Peak training memory is measured per model in a fresh subprocess (RSS delta
over a few training steps), so one model's allocator history cannot flatter or blame another.
With CUDA, the same table is repeated at 448 px with bf16 autocast and the GPU's max allocated
memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mlic.config import load_config
from mlic.data.synthetic import CATEGORIES
from mlic.graph.label_graph import LabelGraph, synthetic_label_graph
from mlic.knobs import Knobs
from mlic.models import create_model, list_models
from mlic.models.layers import Backbone
from mlic.paths import Paths
from mlic.training.loop import adamw

REFERENCE = "baseline"


@dataclass(frozen=True)
class Setting:
    """Where and how the models run; `knobs` is `models` from params.yaml (models as configured)."""

    graph: LabelGraph
    backbone: str
    image_size: int
    batch_size: int
    device: torch.device
    amp: bool
    knobs: dict[str, Knobs]

    def build(self, arch: str) -> nn.Module:
        torch.manual_seed(0)
        model = create_model(arch, self.graph.num_classes, self.graph, backbone=self.backbone, knobs=self.knobs[arch])
        return model.to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(self.batch_size, 3, self.image_size, self.image_size, generator=generator)
        targets = (torch.rand(self.batch_size, self.graph.num_classes, generator=generator) < 0.2).float()
        return images.to(self.device), targets.to(self.device)


@dataclass
class Timings:
    inference_s: list[float] = field(default_factory=list)
    exported_inference_s: list[float] = field(default_factory=list)
    train_step_s: list[float] = field(default_factory=list)
    #: The same step with the backbone in NCHW (`Backbone.use_channels_last(False)`), a twin model.
    train_step_nchw_s: list[float] = field(default_factory=list)


def load_graph(path: Path, num_classes: int) -> tuple[LabelGraph, str]:
    if path.is_file():
        return LabelGraph.load(path), str(path)
    return synthetic_label_graph(num_classes), f"synthetic, {num_classes} labels"


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor, amp: bool
) -> None:
    """What the training loop does per batch: BCE + the model's auxiliary loss, backward, step."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.binary_cross_entropy_with_logits(model(images).float(), targets)
        if hasattr(model, "auxiliary_loss"):
            loss = loss + model.auxiliary_loss().float()
    loss.backward()
    optimizer.step()


def timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def exported_program(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """The eval-mode model as a `torch.export` program with a dynamic batch dimension (as the
    export test builds it), runnable like the module."""
    batch = torch.export.Dim("batch", min=1, max=max(2, images.shape[0]))
    return torch.export.export(model.eval(), (images,), dynamic_shapes={"images": {0: batch}}).module()


def measure(archs: list[str], setting: Setting, rounds: int, warmup: int) -> tuple[dict[str, Timings], dict[str, int]]:
    """Interleaved timing: every round times each model once (in a rotated order), so load from
    other processes hits all models alike. Returns timings and parameter counts."""
    models = {arch: setting.build(arch) for arch in archs}
    optimizers = {arch: adamw(model, lr=1e-4) for arch, model in models.items()}
    nchw_models = {arch: setting.build(arch) for arch in archs}
    for model in nchw_models.values():
        for backbone in (module for module in model.modules() if isinstance(module, Backbone)):
            backbone.use_channels_last(False)
    nchw_optimizers = {arch: adamw(model, lr=1e-4) for arch, model in nchw_models.items()}
    images, targets = setting.batch()
    timings = {arch: Timings() for arch in archs}
    # Exported once, from the initial weights: their values do not change the time.
    exported = {arch: exported_program(model, images) for arch, model in models.items()}

    def infer(model: nn.Module) -> None:
        with torch.inference_mode(), torch.autocast(setting.device.type, dtype=torch.bfloat16, enabled=setting.amp):
            model(images)

    for round_index in range(warmup + rounds):
        shift = round_index % len(archs)
        for arch in archs[shift:] + archs[:shift]:
            model = models[arch]
            inference = timed(lambda model=model: infer(model.eval()), setting.device)
            exported_inference = timed(lambda arch=arch: infer(exported[arch]), setting.device)
            model.train()
            step = timed(
                lambda model=model, arch=arch: train_step(model, optimizers[arch], images, targets, setting.amp),
                setting.device,
            )
            nchw_model = nchw_models[arch].train()
            nchw_step = timed(
                lambda model=nchw_model, arch=arch: train_step(
                    model, nchw_optimizers[arch], images, targets, setting.amp
                ),
                setting.device,
            )
            if round_index >= warmup:
                timings[arch].inference_s.append(inference)
                timings[arch].exported_inference_s.append(exported_inference)
                timings[arch].train_step_s.append(step)
                timings[arch].train_step_nchw_s.append(nchw_step)
    params = {arch: sum(p.numel() for p in model.parameters()) for arch, model in models.items()}
    return timings, params


def cuda_peak_mib(arch: str, setting: Setting, steps: int) -> float:
    """Max allocated GPU memory over a few bf16 training steps, one model alone on the GPU
    (weights, gradients, optimizer state and activations)."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = setting.build(arch).train()
    optimizer = adamw(model, lr=1e-4)
    images, targets = setting.batch()
    for _ in range(steps):
        train_step(model, optimizer, images, targets, amp=True)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def _rss_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def memory_probe(arch: str, setting: Setting, steps: int) -> float:
    """Peak RSS increase (MiB) over `steps` training steps, from a state where the model, its
    optimizer and the batch already exist. Runs in its own process (see `--memory-probe`)."""
    model = setting.build(arch).train()
    optimizer = adamw(model, lr=1e-4)
    images, targets = setting.batch()
    before = _rss_kib("VmRSS")
    with contextlib.suppress(OSError):  # reset the peak-RSS mark where the kernel allows it
        Path("/proc/self/clear_refs").write_text("5")
    for _ in range(steps):
        train_step(model, optimizer, images, targets, amp=False)
    return (_rss_kib("VmHWM") - before) / 1024


def memory_in_subprocess(arch: str, args: argparse.Namespace) -> float:
    command = [
        sys.executable,
        __file__,
        "--memory-probe",
        arch,
        "--params",
        str(args.params),
        "--backbone",
        args.backbone,
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--graph",
        str(args.graph),
        "--num-classes",
        str(args.num_classes),
        "--threads",
        str(args.threads),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["rss_delta_mib"])


def table(
    title: str,
    timings: dict[str, Timings],
    params: dict[str, int],
    batch_size: int,
    memory_header: str,
    memory: dict[str, float],
) -> str:
    reference = timings[REFERENCE]
    ref_infer = min(reference.inference_s)
    ref_train = min(reference.train_step_s)
    lines = [
        f"### {title}",
        "",
        "| arch | params (M) | inference img/s | inference × baseline | exported × eager | train step (ms) "
        f"| train step × baseline | NHWC step × NCHW | {memory_header} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, timing in timings.items():
        infer = min(timing.inference_s)
        exported = min(timing.exported_inference_s)
        train = min(timing.train_step_s)
        nchw = min(timing.train_step_nchw_s)
        mem = f"{memory[arch]:.0f}" if arch in memory else "–"
        lines.append(
            f"| {arch} | {params[arch] / 1e6:.1f} | {batch_size / infer:.1f} | {ref_infer / infer:.2f} | "
            f"{infer / exported:.2f} | {train * 1e3:.0f} | {train / ref_train:.2f} | "
            f"{train / nchw:.2f} | {mem} |"
        )
    return "\n".join(lines)


def flops_table(archs: list[str], setting: Setting) -> str:
    """Parameters and forward FLOPs for one image (eval mode) — the paper setting for docs/models.md."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def attention_flops(query: torch.Size, key: torch.Size, value: torch.Size, *_: object, **__: object) -> int:
        return sdpa_flop_count(query, key, value)

    # torch counts the CUDA attention kernels but not the CPU one; give it the same formula.
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention_flops}
    image = torch.randn(1, 3, setting.image_size, setting.image_size)
    lines = [
        f"| arch | params (M) | GFLOPs ({setting.backbone}, {setting.image_size} px, "
        f"{setting.graph.num_classes} labels, 1 image) |",
        "|---|---:|---:|",
    ]
    for arch in archs:
        model = setting.build(arch).eval()
        counter = FlopCounterMode(display=False, custom_mapping=cpu_attention)
        with torch.no_grad(), counter:
            model(image)
        params = sum(p.numel() for p in model.parameters())
        lines.append(f"| {arch} | {params / 1e6:.1f} | {counter.get_total_flops() / 1e9:.1f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="defaults for size/backbone/batch")
    parser.add_argument("--backbone", help="default: train.backbone")
    parser.add_argument("--image-size", type=int, help="default: train.image_size")
    parser.add_argument("--batch-size", type=int, help="default: train.batch_size")
    parser.add_argument("--archs", nargs="+", help="default: every registered model")
    parser.add_argument("--graph", type=Path, default=Paths().graph_file, help="used when present, else synthetic")
    parser.add_argument(
        "--num-classes", type=int, default=len(CATEGORIES), help="labels of the synthetic graph (default: the demo's)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-model RSS subprocesses")
    parser.add_argument("--gpu-backbone", default="resnet101")
    parser.add_argument("--gpu-image-size", type=int, default=448)
    parser.add_argument("--gpu-batch-size", type=int, default=32)
    parser.add_argument("--flops", action="store_true", help="print the parameter/FLOP table at 448 px and exit")
    parser.add_argument("--memory-probe", metavar="ARCH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = load_config(args.params)
    args.backbone = args.backbone or config.train.backbone
    args.image_size = args.image_size or config.train.image_size
    args.batch_size = args.batch_size or config.train.batch_size
    args.knobs = {arch: config.model_knobs(arch) for arch in list_models()}
    args.archs = args.archs or list_models()
    if REFERENCE in args.archs:
        args.archs.remove(REFERENCE)
    args.archs = [REFERENCE, *args.archs]
    return args


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with threads(args.threads):
        if args.flops:  # the paper setting: COCO's 80 labels
            paper = Setting(
                synthetic_label_graph(80),
                args.gpu_backbone,
                args.gpu_image_size,
                1,
                torch.device("cpu"),
                False,
                args.knobs,
            )
            print(flops_table(args.archs, paper))
            return
        graph, graph_source = load_graph(args.graph, args.num_classes)
        cpu = Setting(graph, args.backbone, args.image_size, args.batch_size, torch.device("cpu"), False, args.knobs)
        if args.memory_probe:
            print(json.dumps({"rss_delta_mib": memory_probe(args.memory_probe, cpu, args.memory_steps)}))
            return
        print(
            f"torch {torch.__version__}, {args.threads} CPU threads, graph: {graph_source}; "
            f"best of {args.rounds} interleaved rounds after {args.warmup} warm-up\n"
        )
        timings, params = measure(args.archs, cpu, args.rounds, args.warmup)
        memory = {} if args.no_memory else {arch: memory_in_subprocess(arch, args) for arch in args.archs}
        title = f"CPU — {args.backbone}, {args.image_size} px, batch {args.batch_size}"
        print(table(title, timings, params, args.batch_size, "train peak RSS Δ (MiB)", memory))
        if torch.cuda.is_available():
            gpu = Setting(
                graph,
                args.gpu_backbone,
                args.gpu_image_size,
                args.gpu_batch_size,
                torch.device("cuda"),
                True,
                args.knobs,
            )
            timings, params = measure(args.archs, gpu, args.rounds, args.warmup)
            peak = {arch: cuda_peak_mib(arch, gpu, args.memory_steps) for arch in args.archs}
            title = (
                f"CUDA ({torch.cuda.get_device_name()}) — {args.gpu_backbone}, {args.gpu_image_size} px, "
                f"batch {args.gpu_batch_size}, bf16 autocast"
            )
            print()
            print(table(title, timings, params, args.gpu_batch_size, "train max allocated (MiB)", peak))


if __name__ == "__main__":
    main()
