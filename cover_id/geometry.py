"""Plane geometry on outlines (4-corner polygons in pixels), defined once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def polygon_area(pts: "np.ndarray") -> float:
    """Unsigned area of a simple polygon (shoelace), ``pts`` (N, 2)."""
    import numpy as np

    p = np.asarray(pts, np.float64).reshape(-1, 2)
    return 0.5 * abs(float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])))


def _intersection(a: "np.ndarray", b: "np.ndarray") -> float | None:
    """Intersection area of two convex outlines; None when OpenCV refuses them (non-convex)."""
    import cv2
    import numpy as np

    try:
        inter, _ = cv2.intersectConvexConvex(
            np.asarray(a, np.float32).reshape(-1, 2), np.asarray(b, np.float32).reshape(-1, 2)
        )
    except cv2.error:
        return None
    return float(inter)


def overlap(a: "np.ndarray", b: "np.ndarray") -> float:
    """Intersection over union of two convex outlines; a non-convex one counts as overlapping (1.0)."""
    inter = _intersection(a, b)
    if inter is None:  # be cautious: treat as the same place
        return 1.0
    union = polygon_area(a) + polygon_area(b) - inter
    return inter / union if union > 0 else 0.0


def overlap_over_smaller(a: "np.ndarray", b: "np.ndarray") -> float:
    """Intersection over the smaller area (1.0 when one contains the other, or for degenerate input)."""
    inter = _intersection(a, b)
    smaller = min(polygon_area(a), polygon_area(b))
    if inter is None:
        return 1.0
    return inter / smaller if smaller > 0 else 1.0


def points_inside(xy: "np.ndarray", outline: "np.ndarray") -> "np.ndarray":
    """Boolean mask of the points ``xy`` (N, 2) inside (or on) ``outline``."""
    import cv2
    import numpy as np

    poly = np.asarray(outline, np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in xy], bool)


def project_box(
    h: "np.ndarray | None", box: tuple[float, float, float, float], then: "np.ndarray | None" = None
) -> list[list[float]] | None:
    """A box's corners through homography ``h`` (then ``then``) -> 4 [x, y] rounded to 0.1 px; None if degenerate."""
    import cv2
    import numpy as np

    if h is None:
        return None
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32).reshape(-1, 1, 2)
    m = h if then is None else then @ h
    pts = cv2.perspectiveTransform(corners, m.astype(np.float64)).reshape(4, 2)
    if not np.all(np.isfinite(pts)):
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in pts]
