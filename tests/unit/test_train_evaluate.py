import json

import numpy as np
import pytest
import torch

from mlic.errors import ConfigError, TrainingError
from mlic.models.saved import load_model
from mlic.steps import evaluate as evaluate_step
from mlic.steps import graph as graph_step
from mlic.steps import train as train_step


@pytest.fixture
def graphed(tiny_config, tiny_paths):
    config = tiny_config(tiny_paths.root)
    graph_step.run(config, tiny_paths)
    return config, tiny_paths


def test_training_writes_a_self_contained_model(graphed):
    config, paths = graphed
    result = train_step.run(config, paths, "mlgcn")
    model, spec = load_model(paths.model_dir("mlgcn"))
    assert spec["arch"] == "mlgcn" and spec["image_size"] == 32 and spec["num_classes"] == 6
    assert "adjacency" in model.state_dict() and "label_embeddings" in model.state_dict()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 6)
    assert result.epochs == 2 and np.isfinite(result.train_loss)
    assert paths.checkpoint_file("mlgcn").is_file()
    assert (paths.train_logs("mlgcn") / "plots" / "metrics" / "train" / "loss.tsv").is_file()


def test_training_is_deterministic_on_cpu(graphed):
    config, paths = graphed
    train_step.run(config, paths, "baseline")
    first = torch.load(paths.model_dir("baseline") / "weights.pt", weights_only=True)
    paths.checkpoint_file("baseline").unlink()
    train_step.run(config, paths, "baseline")
    second = torch.load(paths.model_dir("baseline") / "weights.pt", weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_resume_after_an_interruption_matches_an_uninterrupted_run(graphed, monkeypatch):
    from mlic.training.loop import Trainer

    config, paths = graphed
    train_step.run(config, paths, "baseline")
    uninterrupted = torch.load(paths.model_dir("baseline") / "weights.pt", weights_only=True)
    paths.checkpoint_file("baseline").unlink()

    original = Trainer._train_epoch

    def killed_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_step.run(config, paths, "baseline")
    assert torch.load(paths.checkpoint_file("baseline"), weights_only=True)["epoch"] == 1
    monkeypatch.setattr(Trainer, "_train_epoch", original)

    result = train_step.run(config, paths, "baseline")
    assert result.resumed_at_epoch == 1 and result.epochs == 2
    resumed = torch.load(paths.model_dir("baseline") / "weights.pt", weights_only=True)
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)


def test_changed_params_do_not_resume_a_stale_checkpoint(graphed):
    config, paths = graphed
    train_step.run(config, paths, "baseline")
    changed = config.model_copy(deep=True)
    changed.train.lr = 0.001
    assert train_step.run(changed, paths, "baseline").resumed_at_epoch == 0


def test_diverging_loss_names_the_knob(graphed):
    config, paths = graphed
    config.train.max_loss = 1e-6
    with pytest.raises(TrainingError) as excinfo:
        train_step.run(config, paths, "baseline")
    assert excinfo.value.field == "train.lr"


def test_unknown_architecture_is_a_config_error(graphed):
    config, paths = graphed
    with pytest.raises(ConfigError, match="architectures"):
        train_step.run(config, paths, "resnet")


def test_evaluate_writes_metrics_thresholds_and_gates(graphed):
    config, paths = graphed
    for arch in config.architectures:
        train_step.run(config, paths, arch)
    result = evaluate_step.run(config, paths)
    metrics = json.loads(paths.evaluation_metrics.read_text())
    assert set(metrics) == {"baseline", "mlgcn"}
    assert {"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "OF1_top3"} <= set(metrics["mlgcn"])
    best = json.loads(paths.best_file.read_text())
    assert best["arch"] == result.best_arch and len(best["thresholds"]) == 6
    assert result.best_map == max(m["mAP"] for m in metrics.values())
    header = paths.per_class_metrics.read_text().splitlines()[0]
    assert header.startswith("label,test_positives,AP_baseline,AP_mlgcn")
    assert (paths.plots_dir / "map_by_arch.png").is_file()

    config.evaluate.min_map = 100.0
    failed = evaluate_step.run(config, paths)
    assert not failed.gate_passed
    assert not paths.best_file.exists()  # nothing stale can be packaged
    assert paths.evaluation_metrics.is_file()


def test_evaluate_names_a_missing_model(graphed):
    from mlic.errors import DataError

    config, paths = graphed
    with pytest.raises(DataError, match="mlic train --arch baseline"):
        evaluate_step.run(config, paths)


def test_a_single_step_run_trains(graphed):
    """The smallest run (one epoch of one step) must work: quick checks and CI use such runs."""
    config, paths = graphed
    config.train.epochs, config.train.max_steps_per_epoch = 1, 1
    assert train_step.run(config, paths, "baseline").epochs == 1


def test_warmup_cosine_schedule_shape():
    from mlic.training.loop import warmup_cosine

    factor = warmup_cosine(10)
    values = [factor(step) for step in range(10)]
    assert values[0] == 0.5 and values[1] == 1.0  # two warm-up steps
    assert all(a >= b for a, b in zip(values[1:], values[2:]))  # then never rises
    assert warmup_cosine(1)(0) == 1.0
