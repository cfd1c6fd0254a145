"""Small image operations shared by every step (one definition each)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def shrink_size(size: tuple[int, int], max_side: int | None) -> tuple[tuple[int, int], float]:
    """(w, h) bounded to ``max_side`` on the longer side, and the scale applied (1.0: unchanged)."""
    w, h = size
    if not max_side or max(w, h) <= max_side:
        return (w, h), 1.0
    scale = max_side / max(w, h)
    return (max(1, round(w * scale)), max(1, round(h * scale))), scale


def shrink(image: "np.ndarray", max_side: int | None) -> "np.ndarray":
    """``image`` downscaled (area interpolation) so its longer side is at most ``max_side``."""
    import cv2

    h, w = image.shape[:2]
    size, scale = shrink_size((w, h), max_side)
    return image if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
