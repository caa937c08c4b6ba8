"""Box geometry rules shared by the importers.

Boxes feed the pointing game (does a label's attention peak fall on its own object?), so a box
with no area or outside its image would silently skew it. The importers check them while the
source file and the annotation's id are still known, and name both in the error.
"""

from __future__ import annotations

import math

#: How far a box may reach past the image border, in pixels (rounding in exported coordinates).
TOLERANCE_PX = 1.0


def box_problem(box: object, width: float, height: float) -> str | None:
    """What is wrong with box [x, y, w, h] on a `width` × `height` image, or None when it is sound."""
    if not (
        isinstance(box, list | tuple)
        and len(box) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    ):
        return f"box {box!r} is not four numbers [x, y, width, height]"
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return f"box [x, y, width, height] = {list(box)} has no area (width and height must be positive)"
    if x < -TOLERANCE_PX or y < -TOLERANCE_PX or x + w > width + TOLERANCE_PX or y + h > height + TOLERANCE_PX:
        return f"box [x, y, width, height] = {list(box)} reaches outside its {width:g}×{height:g} image"
    return None
