"""Small image and polygon helpers used across the package (one copy of each).

* :func:`shrink_to_side` — the longest side down to a limit, never up.
* :func:`jpeg_thumbnail` — a small JPEG of an image.
* :func:`polygon_area`, :func:`overlap_over_smaller`, :func:`iou` — convex outline geometry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def shrink_to_side(image: np.ndarray, max_side: int | None, min_side: int = 1) -> np.ndarray:
    """``image`` with its longest side at most ``max_side`` (INTER_AREA); unchanged when already small.

    ``min_side`` keeps each side at least this long (tiny inputs stay usable).
    """
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    import cv2

    s = max_side / max(h, w)
    size = (max(min_side, round(w * s)), max(min_side, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def jpeg_thumbnail(image: np.ndarray, side: int, quality: int = 80) -> bytes:
    """A JPEG of ``image`` shrunk to ``side`` (longest side); b"" when it cannot be encoded."""
    import cv2

    ok, buf = cv2.imencode(".jpg", shrink_to_side(image, side), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else b""


def polygon_area(points: np.ndarray) -> float:
    """Area of a simple polygon given as (N, 2) corners (shoelace formula)."""
    import numpy as np

    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _intersection(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection area of two convex polygons; None when OpenCV refuses them (non-convex)."""
    import cv2
    import numpy as np

    try:
        inter, _ = cv2.intersectConvexConvex(np.asarray(a, np.float32), np.asarray(b, np.float32))
    except cv2.error:
        return None
    return float(inter)


def overlap_over_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller area (1.0 when one contains the other, or for degenerate input)."""
    inter = _intersection(a, b)
    smaller = min(polygon_area(a), polygon_area(b))
    if inter is None:
        return 1.0
    return inter / smaller if smaller > 0 else 1.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex outlines; 1.0 (overlapping, be cautious) for non-convex ones."""
    inter = _intersection(a, b)
    if inter is None:
        return 1.0
    union = polygon_area(a) + polygon_area(b) - inter
    return inter / union if union > 0 else 0.0
