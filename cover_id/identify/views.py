"""Step: views. One RootSIFT pass over the photo, seen two ways.

The "full" view is the whole photo; the "crop" view is the keypoints inside
the detected cover outline, carried into the rectified cover's frame. Every
view shares the photo's single keypoint pass, so verification matches once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

    from cover_id.detectors.base import Quad
    from cover_id.features import Features
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch

MULTI_SIDE, MULTI_FEATURES = 1024, 3000  # --multi: several covers share the keypoint budget


class View:
    """One way of looking at the photo.

    ``feats`` are the keypoints inside the view, in view coordinates; ``local``
    maps each photo keypoint to its index in the view (-1 outside);
    ``to_photo`` maps view pixels back to the processed photo.
    """

    def __init__(
        self,
        name: str,
        feats: "Features",
        local: "np.ndarray",
        to_photo: "np.ndarray",
        make_image: "Callable[[], np.ndarray]",
    ) -> None:
        self.name, self.feats, self.local, self.to_photo, self._make_image = name, feats, local, to_photo, make_image

    def image(self) -> "np.ndarray":
        return self._make_image()

    @classmethod
    def whole(cls, feats: "Features", image: "np.ndarray") -> "View":
        import numpy as np

        return cls("full", feats, np.arange(len(feats)), np.eye(3), lambda: image)

    @classmethod
    def crop(cls, full: "View", image: "np.ndarray", quad: "Quad") -> "View":
        """Keypoints inside the quad, carried into the rectified cover's frame."""
        import cv2
        import numpy as np

        from cover_id.detectors.quad import rectify, rectify_transform
        from cover_id.features import Features

        matrix, (w, h) = rectify_transform(quad.corners)
        xy = full.feats.xy
        if len(xy):
            mapped = cv2.perspectiveTransform(xy.reshape(-1, 1, 2).astype(np.float64), matrix).reshape(-1, 2)
            inside = (mapped[:, 0] >= 0) & (mapped[:, 0] < w) & (mapped[:, 1] >= 0) & (mapped[:, 1] < h)
        else:
            mapped, inside = xy, np.zeros(0, bool)
        idx = np.flatnonzero(inside)
        local = np.full(len(xy), -1, np.int64)
        local[idx] = np.arange(len(idx))
        kept = full.feats.take(idx)
        feats = Features(mapped[idx].astype(np.float32), kept.desc, (w, h), kept.response)
        return cls("crop", feats, local, np.linalg.inv(matrix), lambda: rectify(image, quad.corners))

    def subset(self, keep: "np.ndarray") -> "View":
        """The same view restricted to some keypoints (--multi explains matched covers away)."""
        import numpy as np

        idx = np.flatnonzero(keep)
        local = np.full(len(self.feats), -1, np.int64)
        local[idx] = np.arange(len(idx))
        return View(self.name, self.feats.take(idx), local, self.to_photo, self._make_image)


def photo_features(
    image: "np.ndarray", multi: bool = False, max_side: int = 0, max_features: int = 0, pool: "Executor | None" = None
) -> "Features":
    """The photo's one RootSIFT pass (defaults of :func:`extract_features` unless given), as two halves
    (:func:`~cover_id.runtime.split_features`), the second on ``pool`` while this thread describes the
    first; the same keypoints with or without a pool."""
    from cover_id.features import DEFAULT_MAX_FEATURES, DEFAULT_MAX_SIDE, extract_features
    from cover_id.runtime import split_features

    split = split_features()
    if multi:
        return extract_features(image, MULTI_SIDE, MULTI_FEATURES, split=split, pool=pool)
    side, budget = max_side or DEFAULT_MAX_SIDE, max_features or DEFAULT_MAX_FEATURES
    return extract_features(image, side, budget, split=split, pool=pool)


def make_views(image: "np.ndarray", feats: "Features", quad: "Quad | None") -> tuple[View, list[View]]:
    """(the whole photo's view, the views to identify in: the crop first when there is a quad, then the whole)."""
    full = View.whole(feats, image)
    return full, ([View.crop(full, image, quad)] if quad is not None else []) + [full]


_boxes: "dict[bytes, tuple[float, float, float, float]]" = {}  # content boxes by a digest of the keypoints
BOXES_KEPT = 4096


def content_box(feats: "Features") -> tuple[float, float, float, float]:
    """Where a reference's printed content is: its keypoints' extent, slightly padded.

    Reference scans often carry plain margins (a square canvas around a portrait
    DVD cover); outlines and crops should follow the cover, not the canvas.
    Every identify asks for the boxes of its candidates, often the same ones: a
    box is remembered by a digest of the keypoints and size it was computed from.
    """
    import hashlib

    import numpy as np

    key = hashlib.blake2b(
        np.ascontiguousarray(feats.xy).tobytes(), digest_size=16, key=repr(feats.size).encode()
    ).digest()
    box = _boxes.get(key)
    if box is None:
        box = _content_box(feats)
        if len(_boxes) >= BOXES_KEPT:
            _boxes.clear()  # simple and bounded: a collection larger than this recomputes now and then
        _boxes[key] = box
    return box


def _content_box(feats: "Features") -> tuple[float, float, float, float]:
    import numpy as np

    w, h = feats.size
    if len(feats) < 8:
        return 0.0, 0.0, float(w), float(h)
    lo, hi = np.percentile(feats.xy, 0.5, axis=0), np.percentile(feats.xy, 99.5, axis=0)
    snap = 0.1 * max(w, h)  # a plain strip narrower than this is part of the cover, not a margin
    x0 = 0.0 if lo[0] < snap else float(lo[0]) - 0.02 * w
    y0 = 0.0 if lo[1] < snap else float(lo[1]) - 0.02 * h
    x1 = float(w) if w - hi[0] < snap else float(hi[0]) + 0.02 * w
    y1 = float(h) if h - hi[1] < snap else float(hi[1]) + 0.02 * h
    if (x1 - x0) * (y1 - y0) < 0.25 * w * h:  # too little of the image: trust the canvas
        return 0.0, 0.0, float(w), float(h)
    return float(x0), float(y0), float(x1), float(y1)


def reference_outline(store: "IndexStore", m: "GeomMatch", then: "np.ndarray | None" = None) -> "np.ndarray | None":
    """The matched reference's content box in the view (through ``then`` if given), float32 (4, 2)."""
    import numpy as np

    from cover_id.geometry import project_box

    pts = project_box(m.homography, content_box(store.features[m.ref_index]), then)
    return None if pts is None else np.array(pts, np.float32)
