"""The end of `make demo`: serve the packaged model, ask it about a few test images, show the
metrics, stop the server. Run after `dvc repro`; `python -m mlic.demo [--images N] [--keep-serving]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mlic.data.canonical import load_labels, load_split
from mlic.errors import MlicError
from mlic.io import read_json
from mlic.paths import Paths
from mlic.serving import client, server
from mlic.steps.evaluate import metrics_table


def show_predictions(paths: Paths, count: int) -> None:
    names = load_labels(paths.labels_file).names
    test = load_split(paths.split_file("test"))
    records = test.records[:count]
    images = [test.image_path(r) for r in records]
    answers = client.predict_files(paths, images, url=None, all_scores=False)
    print(f"\nThe endpoint's answers for {len(images)} test images:")
    for record, image, answer in zip(records, images, answers):
        print(client.format_answer(image, answer))
        print(f"    truth: {', '.join(names[i] for i in record.labels)}")


def show_metrics(paths: Paths) -> None:
    per_arch = read_json(paths.evaluation_metrics, what="evaluation metrics")
    best = read_json(paths.best_file, what="chosen model")
    print(
        "\nMetrics in percent: val mAP chooses the model, every other column is the test split "
        f"(★ = packaged, gate passed with test mAP {best['metrics']['mAP']:.1f}):"
    )
    print(metrics_table(per_arch, best["arch"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5, help="test images to send")
    parser.add_argument("--keep-serving", action="store_true", help="leave TorchServe running")
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    paths = Paths(args.root)
    try:
        endpoint = server.start(paths, port=0)
        print(endpoint.describe())
        try:
            show_predictions(paths, args.images)
            show_metrics(paths)
        finally:
            if not args.keep_serving:
                server.stop(paths)
                print("\nTorchServe stopped. `make serve` starts it and leaves it running; `make stop` ends it.")
    except MlicError as exc:
        print(f"error: {exc.render()}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
