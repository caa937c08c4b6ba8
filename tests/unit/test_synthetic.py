"""The embedded benchmark: its tables, its co-occurrence, its look-alikes, its determinism."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mlic.config import SyntheticConfig
from mlic.data import synthetic
from mlic.data.synthetic import CATEGORIES, CATEGORY_INDEX, LOOK_ALIKE_GROUPS, SCENES, SPRITES


def _scenes_of(category: str) -> set[str]:
    return {scene.name for scene in SCENES if category in scene.typical}


def test_tables_name_known_categories_and_sprites() -> None:
    assert len({category.name for category in CATEGORIES}) == len(CATEGORIES) >= 20
    assert all(category.sprite in SPRITES for category in CATEGORIES)
    assert all(name in CATEGORY_INDEX for scene in SCENES for name in scene.typical)
    assert all(_scenes_of(category.name) for category in CATEGORIES), "every category belongs to a scene"


def test_look_alikes_share_a_sprite_and_live_in_different_scenes() -> None:
    pairs = LOOK_ALIKE_GROUPS
    assert all(len({CATEGORIES[CATEGORY_INDEX[name]].sprite for name in pair}) == 1 for pair in pairs)
    assert {frozenset(pair) for pair in pairs} >= {frozenset({"plate", "frisbee"}), frozenset({"traffic cone", "buoy"})}
    assert len(pairs) >= 3
    for first, second in pairs:
        assert not _scenes_of(first) & _scenes_of(second), f"{first}/{second} must be told apart by their scene"


def _drawn(category: str) -> np.ndarray:
    canvas = Image.new("RGB", (40, 40), (90, 90, 90))
    sprite = SPRITES[CATEGORIES[CATEGORY_INDEX[category]].sprite]
    synthetic._draw_sprite(ImageDraw.Draw(canvas), sprite, (5.0, 5.0, 30.0, 30.0), shade=1.0)
    return np.asarray(canvas)


def test_look_alikes_are_pixel_identical_and_others_are_not() -> None:
    assert np.array_equal(_drawn("plate"), _drawn("frisbee"))
    assert np.array_equal(_drawn("orange"), _drawn("ball"))
    assert not np.array_equal(_drawn("plate"), _drawn("cup"))


def test_in_full_context_every_object_comes_from_its_scene() -> None:
    config = SyntheticConfig(num_images=400, context_strength=1.0)
    for image in synthetic.sample_images(config, seed=0):
        typical = {CATEGORY_INDEX[name] for name in SCENES[image.scene].typical}
        count = len(image.objects)
        if count <= len(typical):
            assert set(image.labels) <= typical, f"image {image.index} in {SCENES[image.scene].name}"


def test_cooccurrence_follows_the_scene_tables() -> None:
    images = synthetic.sample_images(SyntheticConfig(num_images=1500), seed=0)
    with_label: dict[str, list[set[str]]] = {}
    for image in images:
        names = {CATEGORIES[label].name for label in image.labels}
        for name in names:
            with_label.setdefault(name, []).append(names)

    def rate(given: str, other: str) -> float:
        return sum(other in names for names in with_label[given]) / len(with_label[given])

    assert rate("cup", "plate") > 4 * rate("car", "plate")
    assert rate("boat", "buoy") > 4 * rate("car", "buoy")
    assert rate("frisbee", "dog") > 3 * rate("plate", "dog")
    assert rate("sheep", "fence") > 4 * rate("car", "fence")
    # Out-of-context objects exist at about the configured rate (1 - context_strength, times the
    # share of categories outside the scene).
    outside = sum(
        CATEGORIES[obj.category].name not in SCENES[image.scene].typical for image in images for obj in image.objects
    ) / sum(len(image.objects) for image in images)
    assert 0.03 < outside < 0.2


def test_layouts_use_the_configured_counts_scales_and_backdrops() -> None:
    config = SyntheticConfig(num_images=300, image_size=96, min_objects=2, max_objects=4, background_context=1.0)
    images = synthetic.sample_images(config, seed=5)
    assert Counter(len(image.objects) for image in images).keys() == {2, 3, 4}
    assert all(image.backdrop_scene == image.scene for image in images)
    sides = []
    for image in images:
        record = image.record(config.image_size)
        assert record.labels == sorted({label for label, _ in record.boxes})
        for _, (x, y, width, height) in record.boxes:
            assert x >= 0 and y >= 0 and x + width <= 96.01 and y + height <= 96.01
            sides.append(np.sqrt(width * height) / 96)
    for scale in config.object_scales:
        assert any(abs(side - scale) < 0.1 * scale for side in sides), f"no object near scale {scale}"


def _digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    config = SyntheticConfig(num_images=30, image_size=48)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        synthetic.write_images(synthetic.sample_images(config, seed), tmp_path / name, config, seed)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    different = _digest(tmp_path / "c")
    assert all(different[name] != digest for name, digest in _digest(tmp_path / "a").items())


def test_an_image_does_not_depend_on_which_others_are_drawn() -> None:
    config = SyntheticConfig(num_images=30, image_size=48)
    images = synthetic.sample_images(config, seed=2)
    alone = synthetic.sample_image(7, config, seed=2)
    assert alone == images[7]
    assert np.array_equal(
        np.asarray(synthetic.render(alone, config, 2)), np.asarray(synthetic.render(images[7], config, 2))
    )
