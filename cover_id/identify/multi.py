"""Step: several covers in one photo (--multi). Identify, explain the match's keypoints away, repeat."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cover_id.detectors.base import Quad
    from cover_id.identify.result import Photo
    from cover_id.identify.views import View

MAX_QUADS = 6  # --multi looks for at most this many covers
MIN_KEYPOINTS = 8  # fewer unexplained keypoints left: stop looking
SAME_COVER = 0.5  # a detected quad overlapping a verified outline this much (IoU) is that cover's outline


def identify_multi(
    photo: "Photo", look: "Callable[[Photo, list[View], Quad | None], dict[str, Any]]"
) -> list[dict[str, Any]]:
    """Every recognised cover, best explained first; ``look`` identifies in some views of the photo."""
    import numpy as np

    from cover_id.geometry import points_inside

    assert photo.full is not None
    full = photo.full
    found: list[dict[str, Any]] = []
    remaining = np.ones(len(full.feats), bool)
    for _ in range(MAX_QUADS):
        if remaining.sum() < MIN_KEYPOINTS:
            break
        r = look(photo, [full.subset(remaining)], None)
        if r["decision"] == "reject" or r["match_quad"] is None:
            break
        outline = np.array(r["match_quad"], np.float32) / np.float32(photo.back)
        inside = points_inside(full.feats.xy, outline)
        if not (inside & remaining).any():
            break
        remaining &= ~inside
        if r["match"]["id"] in {f["match"]["id"] for f in found}:
            continue
        quad = detected_outline(photo.quads, outline)
        r["quad"] = photo.to_original(quad.corners) if quad else r["match_quad"]
        r["quad_source"] = "detector" if quad else "homography"
        found.append(r)
    return found


def detected_outline(quads: "list[Quad]", outline: "np.ndarray") -> "Quad | None":
    """The detected quad that best matches a verified outline (IoU above :data:`SAME_COVER`), if any."""
    from cover_id.geometry import overlap

    best, best_iou = None, SAME_COVER
    for q in quads:
        iou = overlap(outline, q.corners)
        if iou > best_iou:
            best, best_iou = q, iou
    return best
