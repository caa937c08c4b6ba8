import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from mlic.config import apply_overrides, config_from_dict
from mlic.errors import ConfigError, TrainingError
from mlic.evaluation.tables import metrics_table
from mlic.graph.label_graph import LabelGraph
from mlic.models import create_model, model_spec
from mlic.models.saved import load_model, save_model
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


@pytest.mark.parametrize("override", ["train.lr=0.001", "models.baseline.dropout=0.5"])
def test_changed_params_do_not_resume_a_stale_checkpoint(graphed, override, caplog):
    """A checkpoint records the settings and knobs it was made with: an experiment with other
    ones (`dvc exp run -S`) starts fresh, and says so, rather than continue another's state."""
    config, paths = graphed
    train_step.run(config, paths, "baseline")
    changed = config_from_dict(apply_overrides(config.to_dict(), [override]))
    with caplog.at_level(logging.INFO, logger="mlic.training.checkpoints"):
        assert train_step.run(changed, paths, "baseline").resumed_at_epoch == 0
    assert "is from other data/params: starting fresh" in caplog.text


def test_diverging_loss_names_the_knob(graphed):
    config, paths = graphed
    config.train.max_loss = 1e-6
    with pytest.raises(TrainingError) as excinfo:
        train_step.run(config, paths, "baseline")
    assert excinfo.value.field == "train.lr"


def test_a_trainer_that_fails_to_build_leaves_the_process_group(graphed, monkeypatch):
    """The process group is joined around the Trainer, not inside it: a failure while building
    (here a label graph made for other labels) still leaves the group."""
    from mlic.training import distributed

    config, paths = graphed
    calls = []
    monkeypatch.setattr(distributed, "init_process_group", lambda context, device: calls.append("init"))
    monkeypatch.setattr(distributed, "destroy_process_group", lambda context: calls.append("destroy"))
    graph = LabelGraph.load(paths.graph_file)
    dataclasses.replace(graph, label_names=list(reversed(graph.label_names))).save(paths.graph_file)
    with pytest.raises(TrainingError, match="other labels"):
        train_step.run(config, paths, "baseline")
    assert calls == ["init", "destroy"]


def test_unknown_architecture_is_a_config_error(graphed):
    config, paths = graphed
    with pytest.raises(ConfigError, match="architectures"):
        train_step.run(config, paths, "resnet")


@pytest.fixture
def trained(graphed):
    config, paths = graphed
    for arch in config.architectures:
        train_step.run(config, paths, arch)
    return config, paths


def test_evaluate_writes_metrics_thresholds_and_gates(trained):
    config, paths = trained
    result = evaluate_step.run(config, paths)
    metrics = json.loads(paths.evaluation_metrics.read_text())
    assert set(metrics) == {"baseline", "mlgcn"}
    assert {"mAP", "val_mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "OF1_top3"} <= set(metrics["mlgcn"])
    best = json.loads(paths.best_file.read_text())
    assert best["arch"] == result.best_arch and len(best["thresholds"]) == 6
    # chosen on val (the first listed on a tie), gated and reported on test
    assert result.chosen_by == "val"
    assert result.best_arch == max(metrics, key=lambda arch: metrics[arch]["val_mAP"])
    assert result.chosen_map == metrics[result.best_arch]["val_mAP"]
    assert result.test_map == metrics[result.best_arch]["mAP"] == best["metrics"]["mAP"]
    assert (
        f"{result.best_arch} chosen by val mAP {result.chosen_map:.2f}, test mAP {result.test_map:.2f}"
        in result.summary()
    )
    assert result.table().splitlines()[0].startswith("| arch | val mAP | mAP | CP |")
    header = paths.per_class_metrics.read_text().splitlines()[0]
    assert header.startswith("label,test_positives,AP_baseline,AP_mlgcn")
    assert (paths.plots_dir / "map_by_arch.png").is_file()
    assert (paths.plots_dir / "training_curves.png").stat().st_size > 1000  # seen offline, unlike dvclive's TSVs
    # the chosen model's decisions: its label co-occurrence beside the true one, and its labels on test images
    for picture in ("cooccurrence.png", "predictions.png"):
        with Image.open(paths.plots_dir / picture) as image:
            assert image.format == "PNG" and min(image.size) > 300

    config.evaluate.min_map = 100.0
    failed = evaluate_step.run(config, paths)
    assert not failed.gate_passed
    assert not paths.best_file.exists()  # nothing stale can be packaged
    assert paths.evaluation_metrics.is_file()


def test_evaluate_table_shows_the_configured_top_k(trained):
    config, paths = trained
    config.evaluate.top_k = 5
    result = evaluate_step.run(config, paths)
    header = result.table().splitlines()[0]
    assert "CF1_top5 | OF1_top5 |" in header and "top3" not in header
    assert "nan" not in result.table()
    # the demo prints the table from evaluation.json alone: the same columns
    assert metrics_table(json.loads(paths.evaluation_metrics.read_text())) == metrics_table(result.per_arch)


def test_evaluate_without_a_val_split_chooses_on_test(trained, caplog):
    from prepared_data import make_prepared

    config, paths = trained
    make_prepared(paths.root, {"val": 0})  # rewrites val.json (and the same labels.json) only
    result = evaluate_step.run(config, paths)
    metrics = json.loads(paths.evaluation_metrics.read_text())
    assert all(np.isnan(m["val_mAP"]) for m in metrics.values())
    assert result.chosen_by == "test" and result.gate_passed
    assert result.test_map == result.chosen_map == max(m["mAP"] for m in metrics.values())
    assert "choosing by test mAP" in caplog.text
    assert (
        json.loads(paths.best_file.read_text())["thresholds"] == [config.evaluate.threshold] * 6
    )  # nothing to tune on


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
    assert all(a >= b for a, b in zip(values[1:], values[2:], strict=False))  # then never rises
    assert warmup_cosine(1)(0) == 1.0


def test_evaluate_draws_where_each_label_looks(trained):
    """A model with label-guided attention gets a picture of its labels' maps; one without gets none."""
    config, paths = trained
    graph = LabelGraph.load(paths.graph_file)
    torch.manual_seed(0)
    model = create_model("msshared", graph.num_classes, graph, backbone=config.train.backbone, knobs={"dim": 32})
    spec = model_spec("msshared", graph, config.train.backbone, config.train.image_size, {"dim": 32})
    save_model(paths.model_dir("msshared"), model, spec)
    config.architectures = ["baseline", "msshared"]
    evaluate_step.run(config, paths)
    picture = paths.plots_dir / "attention_msshared.png"
    assert picture.is_file() and picture.read_bytes().startswith(b"\x89PNG")
    assert not (paths.plots_dir / "attention_baseline.png").exists()
