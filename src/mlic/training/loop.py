"""The training loop: one architecture, BCE (+ a model's own auxiliary loss), AdamW + warm-up/cosine,
a checkpoint each epoch, dvclive curves, DDP under torchrun.

Deterministic on CPU for a seed: every epoch reseeds the global and loader RNGs from (seed,
epoch, rank), so a run resumed from a checkpoint continues exactly as an uninterrupted one would,
and DDP ranks do not draw the same augmentations.
"""

from __future__ import annotations

import logging
import math
import random
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from mlic.config import Config, TrainConfig
from mlic.data.canonical import load_labels
from mlic.data.dataset import MultiLabelDataset
from mlic.data.transforms import eval_transform, train_transform
from mlic.device import select_device
from mlic.errors import TrainingError
from mlic.evaluation.metrics import mean_average_precision
from mlic.evaluation.predict import autocast_context, predict_probabilities
from mlic.graph.label_graph import LabelGraph
from mlic.io import atomic_dir, write_json
from mlic.models import create_model, model_spec
from mlic.models.layers import PretrainedWeights
from mlic.models.saved import save_model
from mlic.paths import Paths
from mlic.training import distributed
from mlic.training.checkpoints import CheckpointWriter, load_checkpoint, run_fingerprint

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    arch: str
    model_dir: Path
    epochs: int
    resumed_at_epoch: int
    train_loss: float
    val_map: float
    seconds_per_epoch: float
    peak_rss_mb: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        resumed = f", resumed at epoch {self.resumed_at_epoch}" if self.resumed_at_epoch else ""
        return (
            f"{self.arch}: {self.epochs} epochs{resumed}, train loss {self.train_loss:.4f}, "
            f"val mAP {self.val_map:.2f}, {self.seconds_per_epoch:.1f} s/epoch, "
            f"peak RSS {self.peak_rss_mb:.0f} MB → {self.model_dir}"
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The RNG seed of one epoch on one rank (augmentation, dropout, loader workers).

    From (seed, epoch), so a resumed run draws what an uninterrupted one would; offset per rank,
    so DDP ranks do not apply the same augmentations in lockstep. Rank 0 keeps the seed of a
    single-process run.
    """
    return seed * 1000 + epoch + rank * 1_000_003


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def param_groups(model: nn.Module, lr: float, head_lr_scale: float, weight_decay: float) -> list[dict[str, Any]]:
    """Backbone vs everything else (graph parts, heads): the latter may learn faster."""
    backbone, head = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (backbone if name.startswith("backbone.") else head).append(parameter)
    groups = [{"params": backbone, "lr": lr}, {"params": head, "lr": lr * head_lr_scale}]
    return [dict(g, weight_decay=weight_decay) for g in groups if g["params"]]


def adamw(model: nn.Module, lr: float, *, head_lr_scale: float = 1.0, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """The optimizer every training uses (and `bench/speed.py` times). Fused: one kernel over all
    parameters, where the per-tensor loop took 0.8 s of MSRN's 3 s step on 2 CPU threads."""
    return torch.optim.AdamW(param_groups(model, lr, head_lr_scale, weight_decay), fused=True)


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.2) -> Callable[[int], float]:
    """LR factor: linear warm-up (randomly initialised heads need it), then cosine decay to 0.

    Defined for any number of steps, down to a single one (quick test runs).
    """
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """A model's own extra objective (e.g. CMA-SGE's embedding loss), when it defines one."""
    method = getattr(model, "auxiliary_loss", None)
    return method() if callable(method) else None


def log_epoch(live: Any, epoch: dict[str, float]) -> None:
    """One epoch's figures as one dvclive step."""
    live.log_metric("train/loss", epoch["train_loss"])
    live.log_metric("val/mAP", epoch["val_mAP"])
    live.log_metric("epoch_seconds", epoch["seconds"])
    live.next_step()


class Trainer:
    """Holds the pieces of one run; `fit()` trains, checkpoints, and returns the unwrapped model."""

    def __init__(
        self, config: Config, paths: Paths, arch: str, context: distributed.DistributedContext, device: torch.device
    ) -> None:
        """Builds everything from files and params; starts nothing that outlives it (the process
        group belongs to `train()`, DataLoader workers start with the first epoch), so a failure
        here leaks nothing."""
        self.config, self.paths, self.arch = config, paths, arch
        self.settings = config.train
        self.context, self.device = context, device
        seed_everything(self.settings.seed)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.graph, self.num_classes = self._label_graph()
        self.knobs = config.model_knobs(arch)
        self.model = create_model(
            arch,
            self.num_classes,
            self.graph,
            backbone=self.settings.backbone,
            pretrained=PretrainedWeights.from_settings(self.settings.pretrained, self.settings.pretrained_path),
            knobs=self.knobs,
        ).to(self.device)
        self.train_set, self.val_set = self._datasets()
        self.loader_generator = torch.Generator()
        self.train_loader, self.val_loader = self._loaders()
        self.steps_per_epoch = len(self.train_loader)
        if self.settings.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, self.settings.max_steps_per_epoch)
        settings = self.settings
        self.optimizer = adamw(
            self.model, settings.lr, head_lr_scale=settings.head_lr_scale, weight_decay=settings.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.settings.epochs * self.steps_per_epoch)
        )
        self.wrapped: nn.Module = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.context.enabled
            else self.model
        )
        self.fingerprint = run_fingerprint(
            {
                "arch": arch,
                "train": self.settings.model_dump(),
                "knobs": self.knobs.model_dump(mode="json"),
                "world": self.context.world_size,
            },
            [paths.split_file("train"), paths.graph_file],
        )

    # -- construction ----------------------------------------------------------------------
    def _label_graph(self) -> tuple[LabelGraph, int]:
        """The graph step's graph, refused when it was built for other labels than the data."""
        labels = load_labels(self.paths.labels_file)
        graph = LabelGraph.load(self.paths.graph_file)
        if graph.label_names != labels.names:
            raise TrainingError(
                "the label graph was built for other labels than the prepared data",
                file=self.paths.graph_file,
                fix="re-run `mlic graph` after `mlic prepare`",
            )
        return graph, labels.num_classes

    def _datasets(self) -> tuple[MultiLabelDataset, MultiLabelDataset]:
        max_pixels = self.config.data.max_image_pixels
        train_set = MultiLabelDataset(
            self.paths.split_file("train"),
            self.num_classes,
            train_transform(self.settings.image_size, self.settings.augment),
            max_pixels,
        )
        val_set = MultiLabelDataset(
            self.paths.split_file("val"), self.num_classes, eval_transform(self.settings.image_size), max_pixels
        )
        if len(train_set) == 0:
            raise TrainingError(
                "the training split is empty", file=self.paths.split_file("train"), fix="check data.split"
            )
        return train_set, val_set

    def _loaders(self) -> tuple[DataLoader, DataLoader]:
        """Shuffled training batches (sharded across ranks under DDP) and the val batches, each
        rank scoring its share of val."""
        sampler = (
            DistributedSampler(self.train_set, seed=self.settings.seed, drop_last=False)
            if self.context.enabled
            else RandomSampler(self.train_set, generator=self.loader_generator)
        )
        pin = self.device.type == "cuda"
        train_loader = DataLoader(
            self.train_set,
            batch_size=self.settings.batch_size,
            sampler=sampler,
            num_workers=self.settings.num_workers,
            drop_last=len(self.train_set) > self.settings.batch_size,
            pin_memory=pin,
            generator=self.loader_generator,
            persistent_workers=self.settings.num_workers > 0,
        )
        val_loader = DataLoader(
            self.val_set,
            batch_size=self.settings.batch_size,
            num_workers=self.settings.num_workers,
            pin_memory=pin,
            sampler=DistributedSampler(self.val_set, shuffle=False) if self.context.enabled else None,
        )
        return train_loader, val_loader

    # -- one epoch -------------------------------------------------------------------------
    def _check_loss(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        value = float(loss.detach())
        if not math.isfinite(value) or value > self.settings.max_loss:
            raise TrainingError(
                f"loss diverged to {value} at epoch {epoch + 1}, step {step + 1}",
                field="train.lr",
                fix=f"lower train.lr (now {self.settings.lr}) or train.head_lr_scale; check the data",
            )

    def _train_epoch(self, epoch: int) -> float:
        self.wrapped.train()
        criterion = nn.BCEWithLogitsLoss()
        total, batches = 0.0, 0
        # A context manager closes the bar on the early break below too, not whenever it is collected.
        with tqdm(
            self.train_loader,
            total=self.steps_per_epoch,
            desc=f"{self.arch} epoch {epoch + 1}/{self.settings.epochs}",
            disable=not self.context.is_main,
            leave=False,
        ) as progress:
            for step, (images, targets) in enumerate(progress):
                if step >= self.steps_per_epoch:
                    break
                images = images.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                with autocast_context(self.device, self.settings.amp):
                    loss = criterion(self.wrapped(images).float(), targets)
                    extra = auxiliary_loss(self.model)
                    if extra is not None:
                        loss = loss + extra.float()
                self._check_loss(loss, epoch, step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                total += float(loss.detach())
                batches += 1
                progress.set_postfix(loss=f"{total / batches:.4f}")
        return distributed.mean_across_ranks(total / max(batches, 1), self.context, self.device)

    def _validate(self) -> float:
        """Val mAP on rank 0 (NaN elsewhere); every rank scores its shard of the split.

        Sharded so that no rank idles at a barrier while rank 0 alone scores a large split, which
        can outlast the collective timeout. Rank 0's buffers (BatchNorm statistics) go to every
        rank first: the figure is that of the model rank 0 saves.
        """
        if len(self.val_set) == 0:
            return float("nan")
        distributed.broadcast_buffers(self.model, self.context)
        probabilities, targets = predict_probabilities(self.model, self.val_loader, self.device, self.settings.amp)
        if self.context.enabled:
            probabilities, targets = distributed.gather_shards(
                [probabilities, targets], len(self.val_set), self.context, self.device
            )
            if not self.context.is_main:
                return float("nan")
        return mean_average_precision(probabilities, targets, self.graph.label_names)

    # -- checkpoints ----------------------------------------------------------------------
    def _state(self, epoch: int, history: list[dict[str, float]]) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": history,
        }

    def _resume(self) -> tuple[int, list[dict[str, float]]]:
        state = load_checkpoint(self.paths.checkpoint_file(self.arch), self.fingerprint)
        if state is None:
            return 0, []
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        log.info(
            "%s: resuming after epoch %d from %s", self.arch, state["epoch"], self.paths.checkpoint_file(self.arch)
        )
        return int(state["epoch"]), list(state["history"])

    # -- the run --------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        start_epoch, history = self._resume()
        live = self._open_live(history)
        checkpoints = CheckpointWriter()
        try:
            for epoch in range(start_epoch, self.settings.epochs):
                seed = epoch_seed(self.settings.seed, epoch, self.context.rank)
                seed_everything(seed)
                self.loader_generator.manual_seed(seed)
                if isinstance(self.train_loader.sampler, DistributedSampler):
                    self.train_loader.sampler.set_epoch(epoch)
                started = time.perf_counter()
                train_loss = self._oom_guard(self._train_epoch, epoch)
                seconds = time.perf_counter() - started
                val_map = self._validate()
                history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_mAP": val_map, "seconds": seconds})
                if self.context.is_main:
                    log.info(
                        "%s epoch %d: loss %.4f, val mAP %.2f (%.1f s)",
                        self.arch,
                        epoch + 1,
                        train_loss,
                        val_map,
                        seconds,
                    )
                    checkpoints.save(self.paths.checkpoint_file(self.arch), self._state(epoch + 1, history))
                    if live is not None:
                        log_epoch(live, history[-1])
                distributed.barrier(self.context)
            checkpoints.wait()
        finally:
            checkpoints.close()
            if live is not None:
                live.end()
        return self._result(start_epoch, history)

    def _oom_guard(self, function: Any, epoch: int) -> float:
        try:
            return function(epoch)
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of memory on {self.device} ({self.settings.batch_size} images of {self.settings.image_size} px)",
                field="train.batch_size",
                fix="lower train.batch_size or train.image_size, or use a smaller train.backbone",
            ) from exc

    def _open_live(self, history: list[dict[str, float]]) -> Any:
        """dvclive's curves, rebuilt from the checkpoint's history rather than resumed from dvclive's
        own files: those are written in place, so a kill can tear them, and they lag the checkpoint
        by an epoch when the kill lands between the two writes."""
        if not self.context.is_main:
            return None
        from dvclive import Live

        logs = str(self.paths.train_logs(self.arch))
        live = Live(dir=logs, dvcyaml=None, save_dvc_exp=False, resume=False, report=None)
        for epoch in history:
            log_epoch(live, epoch)
        return live

    def _result(self, start_epoch: int, history: list[dict[str, float]]) -> TrainResult:
        last = history[-1] if history else {"train_loss": float("nan"), "val_mAP": float("nan")}
        ran = [h["seconds"] for h in history[start_epoch:]] or [h["seconds"] for h in history]
        return TrainResult(
            arch=self.arch,
            model_dir=self.paths.model_dir(self.arch),
            epochs=len(history),
            resumed_at_epoch=start_epoch,
            train_loss=float(last["train_loss"]),
            val_map=float(last["val_mAP"]),
            seconds_per_epoch=float(np.mean(ran)) if ran else 0.0,
            peak_rss_mb=peak_rss_mb(),
            history=history,
        )

    def save(self, result: TrainResult) -> None:
        """Rank 0 writes the model folder whole (atomic), with the training summary beside it."""
        if not self.context.is_main:
            return
        spec = model_spec(self.arch, self.graph, self.settings.backbone, self.settings.image_size, self.knobs)
        with atomic_dir(self.paths.model_dir(self.arch)) as staging:
            save_model(staging, self.model, spec)
            write_json(
                staging / "training.json",
                {
                    "epochs": result.epochs,
                    "train_loss": result.train_loss,
                    "val_mAP": result.val_map,
                    "seconds_per_epoch": result.seconds_per_epoch,
                    "peak_rss_mb": result.peak_rss_mb,
                    "world_size": self.context.world_size,
                    "device": str(self.device),
                    "history": result.history,
                },
            )


@contextmanager
def process_group(settings: TrainConfig) -> Iterator[tuple[distributed.DistributedContext, torch.device]]:
    """This process's rank and device, with the DDP process group (under torchrun) joined for
    the block and always left afterwards, whatever fails inside."""
    context = distributed.from_environment()
    device = select_device(settings.device, context.local_rank)
    distributed.init_process_group(context, device)
    try:
        yield context, device
    finally:
        distributed.destroy_process_group(context)


def train(config: Config, paths: Paths, arch: str) -> TrainResult | None:
    """Train and save; under torchrun only rank 0 returns a result (the others return None)."""
    with process_group(config.train) as (context, device):
        trainer = Trainer(config, paths, arch, context, device)
        result = trainer.fit()
        trainer.save(result)
        distributed.barrier(context)
        return result if context.is_main else None
