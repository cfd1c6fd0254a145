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


# A photo this dim (median grey level of the whole frame) and without bright highlights (its 99th
# percentile below DIM_HIGHLIGHTS) is underexposed: it is brightened before anything looks at it. In such
# a shot SIFT's contrast threshold drops most of the cover's keypoints and shadows compress its texture.
# A lit cover on a dark table is dim by its median but keeps its highlights, and is left alone. The dev
# photos have medians 66-255 and are never touched; the dev photos darkened as an underexposed camera
# would (``accuracy.py --degrade dark``: medians 14-54, 99th percentiles 36-157) nearly all are; the
# generated card and edition photos on dark playmats (medians under 50, 99th percentiles 163-254) are not.
DIM_MEDIAN = 50
DIM_HIGHLIGHTS = 160
DIM_TARGET = 90  # the median a dim photo is brought to, by a gamma curve (darks lifted most)
DIM_GAMMA_MIN = 0.4  # the strongest lift: beyond it, noise is what gets brightened


def grey_levels(image: "np.ndarray", fractions: "tuple[float, ...]" = (0.5,)) -> list[int]:
    """Grey levels of ``image`` at these fractions of its pixels (0.5: the median), from every 4th
    pixel each way (cheap, and plenty for a percentile)."""
    import cv2
    import numpy as np

    sample = np.ascontiguousarray(image[::4, ::4])
    grey = sample if sample.ndim == 2 else cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY)
    cumulative = np.cumsum(np.bincount(grey.ravel(), minlength=256))
    return [int(np.searchsorted(cumulative, max(1, int(np.ceil(f * grey.size))))) for f in fractions]


def median_grey(image: "np.ndarray") -> int:
    """The median grey level of ``image`` (see :func:`grey_levels`)."""
    return grey_levels(image)[0]


def brighten_dim(image: "np.ndarray") -> "np.ndarray":
    """``image`` (8-bit) with its tones lifted by a gamma curve when it is underexposed (median grey
    below :data:`DIM_MEDIAN`, 99th percentile below :data:`DIM_HIGHLIGHTS`), so its median becomes
    :data:`DIM_TARGET`; otherwise ``image`` itself."""
    import cv2
    import numpy as np

    if image.dtype != np.uint8 or image.size == 0 or (image.ndim == 3 and image.shape[2] != 3):
        return image
    median, highlights = grey_levels(image, (0.5, 0.99))
    if median >= DIM_MEDIAN or highlights >= DIM_HIGHLIGHTS:
        return image
    gamma = max(DIM_GAMMA_MIN, float(np.log(DIM_TARGET / 255.0) / np.log(max(median, 1) / 255.0)))
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)
