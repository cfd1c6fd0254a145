"""Local features: RootSIFT keypoints with compact uint8 descriptors.

References and queries are described the same way; the index keeps every
reference's keypoints (packed, see :func:`pack_features`) for geometric
re-ranking and for fitting the ``local`` encoder's codebook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cover_id.imageops import shrink

if TYPE_CHECKING:
    from concurrent.futures import Executor

# RootSIFT components lie in [0, 1] and rarely exceed 0.5 (SIFT clips each
# bin at 0.2 of the L2 norm before the square root); scaling by 600 and
# clipping keeps 8 bits of precision where the values actually are.
DESC_SCALE = 600.0
DEFAULT_MAX_SIDE = 640
DEFAULT_MAX_FEATURES = 1000
DEFAULT_CONTRAST = 0.04  # SIFT's contrast threshold (OpenCV's default)
# Photos through glass, in dim rooms or of soft watercolours have little
# contrast: at 0.04 a museum photo keeps 20-100 keypoints of a 1000 budget and
# matches nothing; some references (dark paintings, watercolours, flat-colour
# prints) keep as few. An image left with fewer than LOW_CONTRAST_KEYPOINTS is
# described again at LOW_CONTRAST; the count does not grow with the budget
# (--multi and the second look have 3000): an image's contrast is what it is.
# Measured at 640 px: the dev photos of DVDs keep 231-1000 (5 % below 306), of
# books 293-1000, of paintings 23-1000 (half of them 23-73); at 1024 px the DVD
# photos keep 243-3000 (5 % below 462). References at 1024 px: 1 of 358 DVD
# covers, 1 % of books and 15 % of paintings keep fewer than 300.
LOW_CONTRAST = 0.01
LOW_CONTRAST_KEYPOINTS = 300
# Split extraction (photos): the downscaled image is described as
# two halves along its longer side, each reaching SPLIT_OVERLAP px past the seam
# so that SIFT's border (5 px per octave, 5-40 px in the octaves that hold nearly
# all keypoints) and most descriptor support lie inside the tile. Measured on 30
# DVD dev photos at 640 px: 32 px keeps 97-100 % of the single-image keypoints
# (median 98.6 %), 0 px 83-96 %, 64 px 98-100 % for 18 % more CPU than 32 px.
SPLIT_OVERLAP = 32
SPLIT_MIN_SIDE = 256  # smaller images are described in one piece


@dataclass
class Features:
    """Keypoints of one image.

    ``xy`` are pixel coordinates (N, 2) float32 in the image that was passed
    to :func:`extract_features`; ``desc`` are RootSIFT descriptors (N, 128)
    stored as uint8 (see :func:`desc_float`); ``size`` is that image's (w, h);
    ``response`` is each keypoint's SIFT response (its contrast) when just
    extracted, None when read from an index (which does not keep it).
    """

    xy: np.ndarray
    desc: np.ndarray
    size: tuple[int, int]
    response: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def take(self, idx: np.ndarray) -> "Features":
        """The keypoints at ``idx`` (indices or a mask) of the same image, with their responses when known."""
        response = self.response[idx] if self.response is not None else None
        return Features(self.xy[idx], self.desc[idx], self.size, response)


def empty_features(size: tuple[int, int]) -> Features:
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), (int(size[0]), int(size[1])))


def desc_float(desc: np.ndarray) -> np.ndarray:
    """uint8 descriptors -> float32 RootSIFT rows (unit L2 norm up to rounding)."""
    return np.asarray(desc, dtype=np.float32) * np.float32(1.0 / DESC_SCALE)


def _rootsift_uint8(desc: np.ndarray) -> np.ndarray:
    d = np.asarray(desc, dtype=np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    np.sqrt(d, out=d)
    return np.clip(np.rint(d * DESC_SCALE), 0, 255).astype(np.uint8)


_sift_cache: dict[tuple[int, float], cv2.SIFT] = {}


def _sift(max_features: int, contrast: float = DEFAULT_CONTRAST) -> cv2.SIFT:
    sift = _sift_cache.get((max_features, contrast))
    if sift is None:
        sift = cv2.SIFT.create(nfeatures=max_features, contrastThreshold=contrast)
        _sift_cache[(max_features, contrast)] = sift
    return sift


def _sift_arrays(
    gray: np.ndarray, max_features: int, contrast: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(xy float32 (N, 2), response float32 (N,), SIFT descriptors or None) of one image."""
    keypoints, desc = _sift(max_features, contrast).detectAndCompute(gray, None)
    if desc is None or len(keypoints) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), None
    xy = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    response = np.array([k.response for k in keypoints], dtype=np.float32)
    return xy, response, desc


def _tiles_sift(
    gray: np.ndarray, max_features: int, contrast: float, pool: Executor | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_sift_arrays` on two overlapping halves of ``gray``: the second on ``pool`` while this
    thread describes the first, or after it without a pool (the same result either way).

    Each half keeps the keypoints whose centres fall on its own side of the seam; of those, the
    ``max_features`` strongest are kept (what ``nfeatures`` does over one image), strongest first,
    ties in position order, so the result does not depend on which half finished first.
    """
    h, w = gray.shape[:2]
    axis = 0 if w >= h else 1  # the coordinate (x or y) along which the image is cut
    seam = (w if axis == 0 else h) // 2
    start, end = seam - SPLIT_OVERLAP, seam + SPLIT_OVERLAP
    tiles = (gray[:, :end], gray[:, start:]) if axis == 0 else (gray[:end], gray[start:])
    job = pool.submit(_sift_arrays, tiles[1], max_features, contrast) if pool is not None else None
    first = _sift_arrays(tiles[0], max_features, contrast)
    # A pool busy with other work must not make this thread wait: then the second half runs here.
    second = job.result() if job is not None and not job.cancel() else _sift_arrays(tiles[1], max_features, contrast)
    second[0][:, axis] += start
    keep = (first[0][:, axis] < seam, second[0][:, axis] >= seam)
    parts = [(xy[k], r[k], d[k]) for (xy, r, d), k in zip((first, second), keep) if d is not None]
    if not parts:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), None
    xy, response, desc = (np.concatenate(column) for column in zip(*parts))
    order = np.lexsort((xy[:, 1], xy[:, 0], -response))[:max_features]
    return xy[order], response[order], desc[order]


def extract_features(
    image_bgr: np.ndarray,
    max_side: int = DEFAULT_MAX_SIDE,
    max_features: int = DEFAULT_MAX_FEATURES,
    contrast: float | None = None,
    split: bool = False,
    pool: Executor | None = None,
) -> Features:
    """RootSIFT on a copy downscaled to ``max_side``; coords in the input's pixels.

    Keeps the ``max_features`` strongest keypoints above SIFT's ``contrast``
    threshold. OpenCV's SIFT doubles the image internally, so 640 px already
    resolves fine print on a cover. ``contrast`` None (photos and references
    alike): :data:`DEFAULT_CONTRAST`, and :data:`LOW_CONTRAST` for a low-contrast
    image, one left with fewer than :data:`LOW_CONTRAST_KEYPOINTS` (images with
    contrast enough, nearly all, are described exactly as at the default).
    """
    if image_bgr is None or image_bgr.size == 0:
        raise ValueError("empty image")
    if contrast is None:
        feats = extract_features(image_bgr, max_side, max_features, DEFAULT_CONTRAST, split, pool)
        if len(feats) >= min(LOW_CONTRAST_KEYPOINTS, max_features):
            return feats
        contrast = LOW_CONTRAST
    h, w = image_bgr.shape[:2]
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    gray = shrink(gray, max_side)
    if split and max(gray.shape[:2]) >= SPLIT_MIN_SIDE:
        xy, response, desc = _tiles_sift(gray, max_features, contrast, pool)
    else:
        xy, response, desc = _sift_arrays(gray, max_features, contrast)
    if desc is None or len(xy) == 0:
        return empty_features((w, h))
    # SIFT may return more than nfeatures on ties and duplicates orientations.
    if len(xy) > max_features:
        order = np.argsort(-response, kind="stable")[:max_features]
        xy, response, desc = xy[order], response[order], desc[order]
    if gray.shape[:2] != (h, w):
        # pixel centres: x_in + 0.5 = (x_small + 0.5) / scale
        sx, sy = w / gray.shape[1], h / gray.shape[0]
        xy = (xy + 0.5) * np.array([sx, sy], np.float32) - 0.5
    return Features(xy.astype(np.float32), _rootsift_uint8(desc), (int(w), int(h)), response)


def strongest(feats: Features, n: int) -> Features:
    """The ``n`` keypoints with the highest SIFT response, in their original order (all of them when
    there are no more than ``n``, or no responses to rank by)."""
    if n <= 0 or len(feats) <= n or feats.response is None:
        return feats
    return feats.take(np.sort(np.argsort(-feats.response, kind="stable")[:n]))


def pack_features(features: list[Features]) -> dict[str, np.ndarray]:
    """Concatenate many images' features into flat arrays (for one .npz)."""
    counts = np.array([len(f) for f in features], dtype=np.int64)
    offsets = np.zeros(len(features) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if features:
        xy = np.concatenate([f.xy for f in features]).astype(np.float32)
        desc = np.concatenate([f.desc for f in features]).astype(np.uint8)
    else:
        xy = np.zeros((0, 2), np.float32)
        desc = np.zeros((0, 128), np.uint8)
    sizes = np.array([f.size for f in features], dtype=np.int32).reshape(-1, 2)
    return {"xy": xy, "desc": desc, "offsets": offsets, "sizes": sizes}


def unpack_features(packed: dict[str, np.ndarray]) -> list[Features]:
    """Inverse of :func:`pack_features`; arrays are views into the packed ones."""
    offsets = np.asarray(packed["offsets"], dtype=np.int64)
    xy, desc, sizes = packed["xy"], packed["desc"], packed["sizes"]
    return [
        Features(
            xy[offsets[i] : offsets[i + 1]],
            desc[offsets[i] : offsets[i + 1]],
            (int(sizes[i][0]), int(sizes[i][1])),
        )
        for i in range(len(offsets) - 1)
    ]


def features_at(packed: dict[str, np.ndarray], i: int) -> Features:
    """One image's features from a packed dict without unpacking the rest."""
    a, b = int(packed["offsets"][i]), int(packed["offsets"][i + 1])
    s = packed["sizes"][i]
    return Features(packed["xy"][a:b], packed["desc"][a:b], (int(s[0]), int(s[1])))
