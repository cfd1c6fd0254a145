"""Small image operations shared by every step (one definition each)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def shrink_size(size: tuple[int, int], max_side: int | None, min_side: int = 1) -> tuple[tuple[int, int], float]:
    """(w, h) bounded to ``max_side`` on the longer side (each side at least ``min_side``), and the
    scale applied (1.0: unchanged)."""
    w, h = size
    if not max_side or max(w, h) <= max_side:
        return (w, h), 1.0
    scale = max_side / max(w, h)
    return (max(min_side, round(w * scale)), max(min_side, round(h * scale))), scale


def shrink(image: "np.ndarray", max_side: int | None, min_side: int = 1) -> "np.ndarray":
    """``image`` downscaled (area interpolation) so its longer side is at most ``max_side``; never
    enlarged. ``min_side`` keeps each side at least this long (tiny inputs stay usable)."""
    import cv2

    h, w = image.shape[:2]
    size, scale = shrink_size((w, h), max_side, min_side)
    return image if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def jpeg_thumbnail(image: "np.ndarray", side: int, quality: int = 80) -> bytes:
    """A JPEG of ``image`` shrunk to ``side`` (longest side); b"" when it cannot be encoded."""
    import cv2

    ok, buf = cv2.imencode(".jpg", shrink(image, side), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else b""
