"""Per-photo state (:class:`Photo`) and the JSON object identify returns (:func:`cover_result`).

Every field of the JSON is documented in the README ("Reading the JSON").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import numpy as np

    from cover_id.detectors.base import Quad
    from cover_id.identify.decide import Candidates
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch

Source = Union[str, Path, bytes, "np.ndarray"]
N_ALTERNATIVES = 5
STEPS = ("decode", "detect", "features", "embed", "search", "rerank")


def ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


@dataclass
class Photo:
    """Everything identify knows about one photo, filled in step by step.

    ``back`` is the factor from processing pixels back to the original photo's;
    ``variants`` maps a view name to its verified candidates; ``timings`` (ms)
    are shared with a closer look at the same photo.
    """

    source: Source
    label: str
    image: "np.ndarray | None" = None
    back: float = 1.0
    quads: "list[Quad]" = field(default_factory=list)
    full: "View | None" = None
    views: "list[View]" = field(default_factory=list)
    vectors: "np.ndarray | None" = None
    variants: "dict[str, Candidates]" = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))
    # (views, their Verifier) of the last look: a wider look at the same views verifies only what is new
    retrieved: "tuple[Any, ...] | None" = field(default=None, repr=False)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = round(self.timings.get(step, 0.0) + ms_since(t), 1)

    def closer(self, image: "np.ndarray", back: float) -> "Photo":
        """The same photo at another resolution (the quads carried over, timings shared)."""
        factor = self.back / back
        return Photo(self.source, self.label, image, back, [q.scaled(factor) for q in self.quads], timings=self.timings)

    def trace(self) -> dict[str, Any]:
        """What the decision was made from: the processed image, the views' vectors, the candidates per view,
        and the photo itself (its views, for replaying the consistency step)."""
        return {"image": self.image, "vectors": self.vectors, "variants": dict(self.variants), "photo": self}

    def to_original(self, pts: "Any") -> list[list[float]]:
        """Processing-pixel points -> the original photo's pixels, rounded to 0.1 px."""
        return [[round(float(x) * self.back, 1), round(float(y) * self.back, 1)] for x, y in pts]


def describe(store: "IndexStore", m: "GeomMatch | None", cosines: dict[int, float]) -> dict[str, Any] | None:
    """A candidate as JSON: its catalog record plus the evidence."""
    from cover_id.identify.items import present

    if m is None:
        return None
    return {
        **present(store, m.ref_index),
        "cosine": round(cosines.get(m.ref_index, 0.0), 4),
        "geom_score": round(m.score, 4),
        "inliers": m.inliers,
    }


def cover_result(
    store: "IndexStore",
    photo: Photo,
    ordered: "list[tuple[str, Candidates]]",
    decision: str,
    quad: "Quad | None",
) -> dict[str, Any]:
    """One cover's JSON: decision, match, alternatives, outlines and the other view's evidence."""
    import numpy as np

    from cover_id.geometry import project_box
    from cover_id.identify.views import content_box

    strategy, (ranked, cosines) = ordered[0]
    best = ranked[0] if ranked else None
    quad_pts = photo.to_original(quad.corners) if quad is not None else None
    match_quad = None
    if best is not None and best.homography is not None:
        view = next(v for v in photo.views if v.name == strategy)
        to_original = np.diag([photo.back, photo.back, 1.0]) @ view.to_photo
        match_quad = project_box(best.homography, content_box(store.features[best.ref_index]), to_original)
    other = None
    if len(ordered) > 1:
        o_name, (o_ranked, o_cos) = ordered[1]
        o_best = o_ranked[0] if o_ranked else None
        other = {
            "strategy": o_name,
            "match_id": (store.records[o_best.ref_index].get("item") or store.records[o_best.ref_index]["id"])
            if o_best
            else None,
            "cosine": round(o_cos.get(o_best.ref_index, 0.0), 4) if o_best else None,
            "geom_score": round(o_best.score, 4) if o_best else 0.0,
            "inliers": o_best.inliers if o_best else 0,
        }
    quad_source = "detector" if quad_pts else None
    if quad_pts is None and match_quad is not None and decision != "reject":
        quad_pts, quad_source = match_quad, "homography"  # no outline found: the verified one
    return {
        "decision": decision,
        "confident": decision == "accept",
        "strategy": strategy,
        "cosine": round(cosines.get(best.ref_index, 0.0), 4) if best else None,
        "geom_score": round(best.score, 4) if best else 0.0,
        "inliers": best.inliers if best else 0,
        "match": describe(store, best, cosines),
        "alternatives": [describe(store, m, cosines) for m in ranked[1 : 1 + N_ALTERNATIVES]],
        "quad": quad_pts,
        "quad_source": quad_source,
        "match_quad": match_quad,
        "other_variant": other,
    }


def photo_result(
    photo: Photo, covers: list[dict[str, Any]], multi: bool, exports: dict[str, str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The whole photo's JSON: one cover's fields (or ``covers`` with --multi) plus size, exports, timings, settings."""
    assert photo.image is not None
    h, w = photo.image.shape[:2]
    meta = {
        "image_size": [round(w * photo.back), round(h * photo.back)],
        "exports": exports,
        "timings_ms": photo.timings,
        "settings": settings,
    }
    if multi:
        return {"input": photo.label, "multi": True, "count": len(covers), "covers": covers, **meta}
    return {"input": photo.label, **covers[0], **meta}


def error_result(label: str, message: str) -> dict[str, Any]:
    """A photo that could not be identified: the batch goes on."""
    return {"input": label, "decision": "error", "confident": False, "error": message}
