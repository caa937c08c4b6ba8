"""The embedded benchmark: small generated scenes in which label context *matters*.

Why it is built this way — each point is something a label-graph model can exploit and a plain
BCE classifier has to learn from few examples on its own:

* **Scenes with typical companions.** Every image is one of a handful of everyday scenes
  (kitchen, street, harbour, park, farm). Each object is drawn from its scene's typical set with
  probability `context_strength`, otherwise from all categories (out-of-context objects exist, as
  in real photos). So labels co-occur the way the scene table says: cup with plate and fork, boat
  with buoy and seagull, cow with sheep and fence.
* **Look-alike categories.** Some categories share one sprite exactly and differ only by where
  they occur: a *plate* (kitchen) and a *frisbee* (park) are the same white disc, an *orange*
  (kitchen) and a *ball* (park) the same orange disc, a *traffic cone* (street) and a *buoy*
  (harbour) the same striped cone, a *bench* (park) and a *fence* (farm) the same wooden slats.
  Pixels of the object alone cannot tell them apart; its companions can.
* **Real names, true relations.** Categories carry everyday names whose relations match the
  generated co-occurrence, so word embeddings of the names (the graph step) hold a true prior,
  as they do on COCO.
* **Several scales.** Each object's side is one of `object_scales` (fractions of the image side,
  ±10 %); at 96 px the smallest objects are ~11 px and need the multi-scale features.
* **Backgrounds only weakly indicative.** A CNN sees the pixels around objects too. The backdrop
  is the scene's own colour only with probability `background_context` and otherwise another
  scene's, so it hints at the scene without giving it away; the companions carry the context.
* **Few training images per label.** `max_train_per_label` (applied by `mlic prepare` to the
  training split) keeps data scarce enough that priors matter.

Deterministic: layouts and pixels come from generators seeded by (seed, image index), images are
saved as PNG, so the same seed gives the same bytes and dropping images (the per-label cap) does
not change the others. Drawing is PIL primitives plus vectorised numpy backdrops and noise:
900 images of 96 px take a couple of seconds on one CPU core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from mlic.config import SyntheticConfig
from mlic.data.canonical import ImageRecord, LabelSet
from mlic.data.split import seeded_rng

Colour = tuple[int, int, int]
#: One drawing step in the unit square of the object's box: (kind, coordinates, colour).
#: kinds: "rect"/"ellipse" (x0, y0, x1, y1), "ring" (an ellipse outline), "polygon" ((x, y), ...).
Shape = tuple[str, tuple, Colour]


@dataclass(frozen=True)
class Sprite:
    shapes: tuple[Shape, ...]
    #: width / height of the object's box.
    aspect: float = 1.0


@dataclass(frozen=True)
class Category:
    name: str
    #: Key into SPRITES. Look-alike categories share one: only their context tells them apart.
    sprite: str


@dataclass(frozen=True)
class Scene:
    name: str
    backdrop: Colour
    #: Category name → relative weight of being drawn in this scene.
    typical: dict[str, float]


# ---------------------------------------------------------------------------------------------
# The world: sprites, categories and scenes — the one place to read or change the benchmark.
# ---------------------------------------------------------------------------------------------
_BLACK, _GLASS, _WOOD, _WHITE = (30, 30, 30), (170, 210, 240), (105, 70, 35), (245, 245, 245)

SPRITES: dict[str, Sprite] = {
    "white disc": Sprite(
        (("ellipse", (0, 0, 1, 1), (236, 236, 236)), ("ring", (0.22, 0.22, 0.78, 0.78), (165, 165, 175)))
    ),
    "orange disc": Sprite(
        (("ellipse", (0, 0, 1, 1), (250, 140, 20)), ("rect", (0.46, 0.04, 0.54, 0.96), (150, 75, 10)))
    ),
    "striped cone": Sprite(
        (
            ("polygon", ((0.5, 0), (0.95, 1), (0.05, 1)), (230, 60, 20)),
            ("polygon", ((0.36, 0.42), (0.64, 0.42), (0.73, 0.62), (0.27, 0.62)), _WHITE),
        ),
        aspect=0.8,
    ),
    "wooden slats": Sprite(
        tuple(
            ("rect", box, _WOOD)
            for box in ((0, 0.12, 1, 0.34), (0, 0.5, 1, 0.72), (0.1, 0, 0.22, 1), (0.78, 0, 0.9, 1))
        ),
        aspect=1.5,
    ),
    "cup": Sprite((("ring", (0.5, 0.3, 0.95, 0.72), (0, 150, 150)), ("rect", (0.05, 0.12, 0.7, 1), (0, 150, 150)))),
    "fork": Sprite(
        tuple(
            ("rect", box, (200, 200, 212))
            for box in (
                (0.4, 0.45, 0.6, 1),
                (0.08, 0.34, 0.92, 0.5),
                (0.08, 0, 0.26, 0.4),
                (0.41, 0, 0.59, 0.4),
                (0.74, 0, 0.92, 0.4),
            )
        ),
        aspect=0.45,
    ),
    "bowl": Sprite(
        (
            ("polygon", ((0, 0.25), (1, 0.25), (0.8, 0.88), (0.2, 0.88)), (130, 60, 170)),
            ("rect", (0.33, 0.86, 0.67, 1), (130, 60, 170)),
        ),
        aspect=1.4,
    ),
    "car": Sprite(
        (
            ("rect", (0, 0.38, 1, 0.8), (200, 30, 40)),
            ("polygon", ((0.18, 0.4), (0.3, 0.05), (0.7, 0.05), (0.82, 0.4)), (200, 30, 40)),
            ("rect", (0.33, 0.12, 0.67, 0.36), _GLASS),
            ("ellipse", (0.1, 0.62, 0.34, 1), _BLACK),
            ("ellipse", (0.66, 0.62, 0.9, 1), _BLACK),
        ),
        aspect=1.5,
    ),
    "bus": Sprite(
        (
            ("rect", (0, 0, 1, 0.85), (240, 200, 20)),
            *(("rect", (x, 0.12, x + 0.22, 0.42), _GLASS) for x in (0.06, 0.39, 0.72)),
            ("ellipse", (0.1, 0.7, 0.28, 1), _BLACK),
            ("ellipse", (0.72, 0.7, 0.9, 1), _BLACK),
        ),
        aspect=1.8,
    ),
    "traffic light": Sprite(
        (
            ("rect", (0, 0, 1, 1), _BLACK),
            ("ellipse", (0.18, 0.04, 0.82, 0.3), (230, 30, 30)),
            ("ellipse", (0.18, 0.37, 0.82, 0.63), (240, 200, 0)),
            ("ellipse", (0.18, 0.7, 0.82, 0.96), (30, 200, 60)),
        ),
        aspect=0.45,
    ),
    "boat": Sprite(
        (
            ("polygon", ((0, 0.62), (1, 0.62), (0.8, 1), (0.2, 1)), (130, 75, 35)),
            ("rect", (0.46, 0.04, 0.54, 0.64), (60, 40, 20)),
            ("polygon", ((0.56, 0.06), (0.96, 0.58), (0.56, 0.58)), _WHITE),
        ),
        aspect=1.2,
    ),
    "fish": Sprite(
        (
            ("polygon", ((0, 0.1), (0.32, 0.5), (0, 0.9)), (250, 128, 80)),
            ("ellipse", (0.22, 0.15, 1, 0.85), (250, 128, 80)),
            ("ellipse", (0.76, 0.34, 0.88, 0.5), _BLACK),
        ),
        aspect=1.6,
    ),
    "seagull": Sprite(
        (
            ("polygon", ((0, 0.15), (0.5, 0.5), (1, 0.15), (0.5, 0.85)), _WHITE),
            ("polygon", ((0.42, 0.55), (0.58, 0.55), (0.5, 0.8)), (240, 170, 0)),
        ),
        aspect=1.6,
    ),
    "dog": Sprite(
        (
            ("ellipse", (0.1, 0.28, 0.8, 0.72), (160, 100, 45)),
            ("ellipse", (0.64, 0.04, 1, 0.44), (160, 100, 45)),
            ("rect", (0, 0.28, 0.16, 0.38), (160, 100, 45)),
            ("rect", (0.2, 0.6, 0.3, 1), (120, 75, 35)),
            ("rect", (0.58, 0.6, 0.68, 1), (120, 75, 35)),
        ),
        aspect=1.3,
    ),
    "tree": Sprite(
        (("rect", (0.4, 0.55, 0.6, 1), (100, 65, 30)), ("ellipse", (0, 0, 1, 0.7), (30, 130, 40))), aspect=0.8
    ),
    "cow": Sprite(
        (
            ("rect", (0.1, 0.7, 0.2, 1), _BLACK),
            ("rect", (0.6, 0.7, 0.7, 1), _BLACK),
            ("rect", (0.04, 0.25, 0.8, 0.72), _WHITE),
            ("rect", (0.76, 0.08, 1, 0.42), _WHITE),
            ("ellipse", (0.16, 0.3, 0.38, 0.52), _BLACK),
            ("ellipse", (0.48, 0.44, 0.7, 0.66), _BLACK),
        ),
        aspect=1.4,
    ),
    "sheep": Sprite(
        (
            ("rect", (0.2, 0.65, 0.3, 1), _BLACK),
            ("rect", (0.58, 0.65, 0.68, 1), _BLACK),
            *(
                ("ellipse", box, (232, 228, 212))
                for box in ((0, 0.2, 0.45, 0.7), (0.25, 0.1, 0.72, 0.62), (0.12, 0.35, 0.62, 0.8))
            ),
            ("ellipse", (0.68, 0.22, 0.98, 0.56), _BLACK),
        ),
        aspect=1.3,
    ),
}

CATEGORIES: tuple[Category, ...] = (
    Category("cup", "cup"),
    Category("plate", "white disc"),
    Category("fork", "fork"),
    Category("bowl", "bowl"),
    Category("orange", "orange disc"),
    Category("car", "car"),
    Category("bus", "bus"),
    Category("traffic light", "traffic light"),
    Category("traffic cone", "striped cone"),
    Category("boat", "boat"),
    Category("buoy", "striped cone"),
    Category("seagull", "seagull"),
    Category("fish", "fish"),
    Category("dog", "dog"),
    Category("frisbee", "white disc"),
    Category("ball", "orange disc"),
    Category("bench", "wooden slats"),
    Category("tree", "tree"),
    Category("cow", "cow"),
    Category("sheep", "sheep"),
    Category("fence", "wooden slats"),
)

SCENES: tuple[Scene, ...] = (
    Scene("kitchen", (222, 205, 170), {"cup": 3, "plate": 3, "fork": 2, "bowl": 2, "orange": 2}),
    Scene("street", (125, 125, 130), {"car": 3, "bus": 2, "traffic light": 3, "traffic cone": 2, "dog": 1}),
    Scene("harbour", (75, 125, 185), {"boat": 3, "buoy": 2, "seagull": 3, "fish": 2}),
    Scene("park", (95, 165, 85), {"dog": 3, "frisbee": 2, "ball": 2, "bench": 2, "tree": 3}),
    Scene("farm", (190, 170, 100), {"cow": 3, "sheep": 3, "fence": 2, "tree": 2, "dog": 1}),
)

CATEGORY_INDEX: dict[str, int] = {category.name: index for index, category in enumerate(CATEGORIES)}


def _look_alike_groups() -> tuple[tuple[str, ...], ...]:
    by_sprite: dict[str, list[str]] = {}
    for category in CATEGORIES:
        by_sprite.setdefault(category.sprite, []).append(category.name)
    return tuple(tuple(names) for names in by_sprite.values() if len(names) > 1)


#: Groups of categories drawn with one sprite: their AP measures how much a model uses context.
LOOK_ALIKE_GROUPS: tuple[tuple[str, ...], ...] = _look_alike_groups()

#: Seed streams, so layouts and pixels of one image never share random draws.
_LAYOUT_STREAM, _RENDER_STREAM = 0, 1
#: Candidate positions tried per object; the least overlapping one is kept.
_PLACEMENT_TRIES = 8
#: Side of the coarse random grid that is smoothly upsampled into the backdrop's texture.
_BACKDROP_GRID = 4


@dataclass(frozen=True)
class PlacedObject:
    category: int
    #: [x, y, w, h] in pixels (COCO convention).
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class SyntheticImage:
    """The layout of one image: everything needed to draw it, decided before any pixel is."""

    index: int
    scene: int
    backdrop_scene: int
    objects: tuple[PlacedObject, ...]

    @property
    def file_name(self) -> str:
        return f"{self.index:05d}.png"

    @property
    def labels(self) -> list[int]:
        return sorted({obj.category for obj in self.objects})

    def record(self, image_size: int) -> ImageRecord:
        return ImageRecord(
            id=self.index,
            file_name=self.file_name,
            width=image_size,
            height=image_size,
            labels=self.labels,
            boxes=[(obj.category, [round(v, 2) for v in obj.box]) for obj in self.objects],
        )


def label_set() -> LabelSet:
    return LabelSet(names=[category.name for category in CATEGORIES], source_ids=list(range(len(CATEGORIES))))


def _scene_weights(scene: Scene) -> np.ndarray:
    weights = np.zeros(len(CATEGORIES))
    for name, weight in scene.typical.items():
        weights[CATEGORY_INDEX[name]] = weight
    return weights


def _pick_categories(scene: Scene, count: int, context_strength: float, rng: np.random.Generator) -> list[int]:
    """Distinct categories: each from the scene's typical set with `context_strength`, else any."""
    typical = _scene_weights(scene)
    chosen: list[int] = []
    for _ in range(count):
        weights = np.ones(len(CATEGORIES)) if rng.random() >= context_strength else typical.copy()
        weights[chosen] = 0.0
        if weights.sum() == 0:  # the typical set is used up: fall back to any category
            weights = np.ones(len(CATEGORIES))
            weights[chosen] = 0.0
        chosen.append(int(rng.choice(len(CATEGORIES), p=weights / weights.sum())))
    return chosen


def _overlap(box: np.ndarray, others: list[np.ndarray]) -> float:
    """Largest fraction of `box` covered by any already placed box."""
    if not others:
        return 0.0
    placed = np.stack(others)
    width = np.clip(
        np.minimum(box[0] + box[2], placed[:, 0] + placed[:, 2]) - np.maximum(box[0], placed[:, 0]), 0, None
    )
    height = np.clip(
        np.minimum(box[1] + box[3], placed[:, 1] + placed[:, 3]) - np.maximum(box[1], placed[:, 1]), 0, None
    )
    return float((width * height).max() / (box[2] * box[3]))


def _place(categories: list[int], config: SyntheticConfig, rng: np.random.Generator) -> tuple[PlacedObject, ...]:
    """Boxes at the configured scales, least-overlapping of a few tries; large ones drawn first."""
    size = config.image_size
    shapes = []
    for category in categories:
        side = float(rng.choice(config.object_scales)) * size * rng.uniform(0.9, 1.1)
        aspect = SPRITES[CATEGORIES[category].sprite].aspect
        width, height = min(side * math.sqrt(aspect), size - 1.0), min(side / math.sqrt(aspect), size - 1.0)
        shapes.append((category, max(width, 3.0), max(height, 3.0)))
    shapes.sort(key=lambda item: -item[1] * item[2])
    placed: list[np.ndarray] = []
    objects = []
    for category, width, height in shapes:
        candidates = np.column_stack(
            [rng.uniform(0, size - width, _PLACEMENT_TRIES), rng.uniform(0, size - height, _PLACEMENT_TRIES)]
        )
        boxes = [np.array([x, y, width, height]) for x, y in candidates]
        best = min(boxes, key=lambda box: _overlap(box, placed))
        placed.append(best)
        objects.append(PlacedObject(category, (float(best[0]), float(best[1]), width, height)))
    return tuple(objects)


def sample_image(index: int, config: SyntheticConfig, seed: int) -> SyntheticImage:
    """Scene, backdrop, categories and boxes of image `index` (cheap: no pixels yet)."""
    rng = seeded_rng(seed, _LAYOUT_STREAM, index)
    scene = int(rng.integers(len(SCENES)))
    backdrop_scene = scene if rng.random() < config.background_context else int(rng.integers(len(SCENES)))
    count = min(int(rng.integers(config.min_objects, config.max_objects + 1)), len(CATEGORIES))
    categories = _pick_categories(SCENES[scene], count, config.context_strength, rng)
    return SyntheticImage(index, scene, backdrop_scene, _place(categories, config, rng))


def sample_images(config: SyntheticConfig, seed: int) -> list[SyntheticImage]:
    return [sample_image(index, config, seed) for index in range(config.num_images)]


def _backdrop(colour: Colour, size: int, rng: np.random.Generator) -> Image.Image:
    """A smooth, textured field around `colour` (a coarse random grid upsampled bilinearly)."""
    grid = np.asarray(colour, dtype=np.float64) + rng.normal(0.0, 22.0, (_BACKDROP_GRID, _BACKDROP_GRID, 3))
    coarse = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8))
    return coarse.resize((size, size), Image.Resampling.BILINEAR)


def _draw_sprite(
    draw: ImageDraw.ImageDraw, sprite: Sprite, box: tuple[float, float, float, float], shade: float
) -> None:
    """Draw the sprite's shapes scaled into `box`; `shade` varies brightness between instances."""
    x0, y0, width, height = box

    def point(x: float, y: float) -> tuple[float, float]:
        return x0 + x * (width - 1), y0 + y * (height - 1)

    for kind, coords, colour in sprite.shapes:
        fill = tuple(int(min(255, c * shade)) for c in colour)
        outline = tuple(int(c * 0.35) for c in fill)
        if kind == "polygon":
            draw.polygon([point(x, y) for x, y in coords], fill=fill, outline=outline)
            continue
        corners = [*point(coords[0], coords[1]), *point(coords[2], coords[3])]
        if kind == "rect":
            draw.rectangle(corners, fill=fill, outline=outline)
        elif kind == "ellipse":
            draw.ellipse(corners, fill=fill, outline=outline)
        else:  # ring
            draw.ellipse(corners, outline=fill, width=max(1, round(min(width, height) * 0.08)))


def render(image: SyntheticImage, config: SyntheticConfig, seed: int) -> Image.Image:
    """Pixels of one layout: backdrop, sprites (largest first), then Gaussian pixel noise."""
    rng = seeded_rng(seed, _RENDER_STREAM, image.index)
    canvas = _backdrop(SCENES[image.backdrop_scene].backdrop, config.image_size, rng)
    draw = ImageDraw.Draw(canvas)
    for obj in image.objects:
        _draw_sprite(draw, SPRITES[CATEGORIES[obj.category].sprite], obj.box, float(rng.uniform(0.85, 1.1)))
    pixels = np.asarray(canvas, dtype=np.float32)
    pixels += rng.normal(0.0, config.noise * 255.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(images: list[SyntheticImage], folder: Path, config: SyntheticConfig, seed: int) -> None:
    """Render and save each layout as `<folder>/<index>.png` (PNG: the same seed, the same bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in tqdm(images, desc="drawing synthetic images", unit="img", leave=False):
        render(image, config, seed).save(folder / image.file_name, format="PNG")
