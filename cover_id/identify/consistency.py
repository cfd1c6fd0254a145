"""Step: consistency. Does the match explain the cover as a whole?

Runs after :func:`~cover_id.identify.decide.choose` on the strongest view's best
candidate. Two questions, both answered by looking at pixels through the
verified homography (:mod:`cover_id.identify.appearance`):

- **another edition?** An accepted match must agree with the photo everywhere
  the reference is visible. A region where the photo has its own keypoints,
  none of them an inlier, and the pixels disagree is a contradiction: a new
  title block, a new layout, other art. Glare and blur leave few keypoints and
  are no contradiction. Contradicted matches go to ``review`` (the match names
  the look-alike), with ``reason: other_edition``.
- **which twin?** When the best candidate's rival for the same place is a near
  twin (a variant with the same art: another set code, rarity stamp or foil),
  the two references are compared with each other to find where they differ,
  and the photo is compared with both there. The one that agrees is chosen;
  it is accepted only when the differing region is seen clearly
  (``reason: variant_verified``), otherwise ``review`` (``reason: variant``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cover_id.identify.decide import Candidates, DecisionPolicy
    from cover_id.identify.result import Photo
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch

MIN_CELL_KEYPOINTS = 3  # a cell with fewer photo keypoints says nothing (glare, blur, plain print)
# Another edition: a quarter of the cover expected to hold at least DEAD_EXPECTED of the match's
# inliers holds none, and either DEAD_CONTRADICTED of its cells contradict (own keypoints, none
# matching, other pixels) or DEAD_DISAGREE of its informative cells disagree. Measured on every
# accepted correct dev photo (dvd-covers 100, books 53, paintings 32): such bands reach at most
# 0.5 contradicted and 0.5 disagreeing; synthetic retitled editions 0.6-1.0, relaid-out 0.6-1.0.
DEAD_CONTRADICTED = 0.6
DEAD_DISAGREE = 0.7
DEAD_EXPECTED = 15.0


def _badness(band: tuple[float, float, float]) -> float:
    """How far a dead band is past the edition thresholds (the larger, the surer)."""
    return max(band[0] / DEAD_CONTRADICTED, band[1] / DEAD_DISAGREE)


@dataclass
class Evidence:
    """Per cell of the reference's content box: appearance and keypoints."""

    ncc: "np.ndarray"  # correlation, NaN where uninformative
    keypoints: "np.ndarray"  # the photo's keypoints falling in the cell
    inliers: "np.ndarray"  # of which inliers of the match
    reference: "np.ndarray"  # the reference's own keypoints in the cell
    visible: "np.ndarray"  # the cell lies inside the photo

    def summary(self) -> dict[str, Any]:
        from cover_id.identify.appearance import Agreement

        a = Agreement(self.ncc, self.visible)
        contradicted, disagree, expected = self.dead_band()
        return {
            "agree": round(a.agree, 3),
            "cells": a.informative,
            "contradicted": int(self.contradicted.sum()),
            "dead_band": {
                "contradicted": round(contradicted, 3),
                "disagree": round(disagree, 3),
                "expected_inliers": round(expected, 1),
            },
        }

    def dead_band(self) -> tuple[float, float, float]:
        """The worst band without a single inlier that should hold at least :data:`DEAD_EXPECTED`:
        (fraction of its cells contradicted, fraction of its informative cells that disagree,
        inliers expected there); zeros when there is none.

        A band is a quarter of the rows or columns, inside the photo. The inliers it should hold are
        the match's inliers spread like the reference's own keypoints; a band expected to hold many
        and holding none, whose pixels disagree, is a region of the cover that is not the
        reference's: another title block, the artwork moved onto another layout.
        """
        import numpy as np

        from cover_id.identify.appearance import AGREE_NCC

        contradicted = self.contradicted
        informative = np.isfinite(self.ncc)
        disagreeing = informative & (np.nan_to_num(self.ncc, nan=1.0) < AGREE_NCC)
        total_inliers, total_ref = int(self.inliers.sum()), max(1, int(self.reference.sum()))
        worst = (0.0, 0.0, 0.0)
        rows, cols = self.ncc.shape
        for axis, n in ((0, rows), (1, cols)):
            width = max(1, n // 4)
            for start in range(0, n - width + 1):
                band = (
                    (slice(start, start + width), slice(None))
                    if axis == 0
                    else (slice(None), slice(start, start + width))
                )
                if self.visible[band].mean() < 0.9 or self.inliers[band].sum() > 0:
                    continue
                expected = total_inliers * float(self.reference[band].sum()) / total_ref
                if expected < DEAD_EXPECTED:
                    continue
                seen = int(informative[band].sum())
                disagree = float(disagreeing[band].sum()) / seen if seen >= max(2, informative[band].size // 2) else 0.0
                worst = max(worst, (float(contradicted[band].mean()), disagree, expected), key=_badness)
        return worst

    @property
    def contradicted(self) -> "np.ndarray":
        """Cells where the pixels disagree although the photo has its own keypoints there, none matching."""
        import numpy as np

        from cover_id.identify.appearance import AGREE_NCC

        return (
            (np.nan_to_num(self.ncc, nan=1.0) < AGREE_NCC)
            & (self.keypoints >= MIN_CELL_KEYPOINTS)
            & (self.inliers == 0)
        )


def ref_to_processed(view: "View", m: "GeomMatch") -> "np.ndarray":
    """Reference pixels -> the processed photo's pixels for a match found in ``view``."""
    return view.to_photo @ m.homography


def evidence(store: "IndexStore", photo: "Photo", view: "View", m: "GeomMatch") -> Evidence | None:
    """Appearance and keypoint evidence of match ``m`` per cell; None when it cannot be looked at."""
    import cv2
    import numpy as np

    from cover_id.identify import appearance
    from cover_id.identify.views import content_box

    if m.homography is None or not m.sane or photo.image is None:
        return None
    reference = appearance.reference_gray(store, m.ref_index)
    if reference is None:
        return None
    box = content_box(store.features[m.ref_index])
    agreement = appearance.compare(photo.image, ref_to_processed(view, m), reference, box)
    # the view's keypoints in the comparison frame, then per cell
    from_cmp, cw, ch = appearance._frame(box)
    ys, xs = appearance._edges(cw, ch)
    keypoints = np.zeros(agreement.ncc.shape, np.int32)
    inliers = np.zeros(agreement.ncc.shape, np.int32)
    xy = view.feats.xy
    if len(xy):
        to_cmp = np.linalg.inv(m.homography @ from_cmp)
        pts = cv2.perspectiveTransform(xy.reshape(-1, 1, 2).astype(np.float64), to_cmp).reshape(-1, 2)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < cw) & (pts[:, 1] >= 0) & (pts[:, 1] < ch)
        r = np.clip(np.searchsorted(ys, pts[:, 1], side="right") - 1, 0, len(ys) - 2)
        c = np.clip(np.searchsorted(xs, pts[:, 0], side="right") - 1, 0, len(xs) - 2)
        np.add.at(keypoints, (r[ok], c[ok]), 1)
        is_inlier = np.zeros(len(xy), bool)
        is_inlier[np.asarray(m.detail.get("inlier_q", []), np.int64)] = True
        sel = ok & is_inlier
        np.add.at(inliers, (r[sel], c[sel]), 1)
    refpts = np.zeros(agreement.ncc.shape, np.int32)
    rxy = store.features[m.ref_index].xy
    if len(rxy):
        pts = cv2.perspectiveTransform(rxy.reshape(-1, 1, 2).astype(np.float64), np.linalg.inv(from_cmp)).reshape(-1, 2)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < cw) & (pts[:, 1] >= 0) & (pts[:, 1] < ch)
        r = np.clip(np.searchsorted(ys, pts[:, 1], side="right") - 1, 0, len(ys) - 2)
        c = np.clip(np.searchsorted(xs, pts[:, 0], side="right") - 1, 0, len(xs) - 2)
        np.add.at(refpts, (r[ok], c[ok]), 1)
    return Evidence(agreement.ncc, keypoints, inliers, refpts, agreement.visible)


def best_evidence(store: "IndexStore", photo: "Photo", ordered: "list[tuple[str, Candidates]]") -> Evidence | None:
    """The per-cell evidence of the strongest view's best candidate (None when there is nothing to look at)."""
    if not ordered or not ordered[0][1].ranked:
        return None
    strategy, (ranked, _) = ordered[0]
    view = next(v for v in photo.views if v.name == strategy)
    return evidence(store, photo, view, ranked[0])


TWIN_SURE = 0.3  # where twins differ, the photo must be within this blend of one of them (0 = it, 1 = the other)
TWIN_RIVAL = 0.5  # a rival scoring at least this fraction of the best's score may be a twin

_relations: "dict[tuple[int, int, int], np.ndarray | None]" = {}


def twin_relation(store: "IndexStore", i: int, j: int) -> "np.ndarray | None":
    """Reference ``i``'s pixels -> reference ``j``'s, from matching the two references' own keypoints.

    Estimating it through the photo (one homography times another's inverse) would add both
    matches' errors; twins differ in details a pixel or two wide.
    """
    import numpy as np

    from cover_id.rerankers.geometric import GeometricReranker

    key = (id(store), i, j)
    if key not in _relations:
        m = GeometricReranker().match(store.features[j], store.features[i], i)  # i's pixels -> j's
        ok = m.homography is not None and m.sane and m.inliers >= 20
        if len(_relations) > 256:
            _relations.clear()
        _relations[key] = np.asarray(m.homography, np.float64) if ok else None
    return _relations[key]


def resolve_twins(
    store: "IndexStore",
    photo: "Photo",
    ordered: "list[tuple[str, Candidates]]",
    policy: "DecisionPolicy",
) -> "tuple[list[tuple[str, Candidates]], str, dict[str, Any]] | None":
    """A best candidate held back only by a rival for the same place: are they variant twins, and which one is it?

    None when this is not such a case; otherwise (views with the winner first, decision, JSON fields).
    """
    import numpy as np

    from cover_id.identify import appearance
    from cover_id.identify.decide import Candidates, rival
    from cover_id.identify.views import content_box

    strategy, (ranked, cosines) = ordered[0]
    if len(ranked) < 2:
        return None
    best = ranked[0]
    second = rival(store, best, ranked[1:])
    if second is None or second.homography is None or not second.sane or best.homography is None:
        return None
    if second.score < TWIN_RIVAL * best.score:
        return None
    others = [m for m in ranked[1:] if m is not second]
    if (
        policy.decide(best, rival(store, best, others), cosines.get(best.ref_index, 0.0)) != "accept"
        and policy.decide(second, rival(store, second, others), cosines.get(second.ref_index, 0.0)) != "accept"
    ):
        return None  # neither would be accepted without the other: not a twin question
    view = next(v for v in photo.views if v.name == strategy)
    first_ref = appearance.reference_image(store, best.ref_index)
    second_ref = appearance.reference_image(store, second.ref_index)
    if first_ref is None or second_ref is None or photo.image is None:
        return None
    first_to_second = twin_relation(store, best.ref_index, second.ref_index)
    if first_to_second is None:
        first_to_second = np.linalg.inv(second.homography) @ best.homography
    verdict = appearance.twins(
        photo.image,
        ref_to_processed(view, best),
        first_ref,
        second_ref,
        first_to_second,
        content_box(store.features[best.ref_index]),
    )
    fields: dict[str, Any] = {
        "twin": {
            "id": store.records[second.ref_index]["id"],
            "differing": round(verdict.differing, 4),
            "blend": round(verdict.blend, 3) if np.isfinite(verdict.blend) else None,
        }
    }
    if not np.isfinite(verdict.blend) or TWIN_SURE < verdict.blend < 1.0 - TWIN_SURE:
        return ordered, "review", {**fields, "reason": "variant"}
    winner, loser = (best, second) if verdict.blend <= TWIN_SURE else (second, best)
    if winner is second:
        fields["twin"]["id"] = store.records[best.ref_index]["id"]
        fields["twin"]["blend"] = round(1.0 - verdict.blend, 3)
    reordered = [winner, loser] + others
    decision = policy.decide(winner, rival(store, winner, others), cosines.get(winner.ref_index, 0.0))
    new = [(strategy, Candidates(reordered, cosines))] + ordered[1:]
    return new, decision, {**fields, "reason": "variant_verified" if decision == "accept" else "variant"}


def check(
    store: "IndexStore",
    photo: "Photo",
    ordered: "list[tuple[str, Candidates]]",
    decision: str,
    policy: "DecisionPolicy",
) -> "tuple[list[tuple[str, Candidates]], str, dict[str, Any]]":
    """(the views, possibly re-ordered, the decision, the JSON fields ``reason``, ``twin`` and ``appearance``)."""
    fields: dict[str, Any] = {"reason": None, "twin": None, "appearance": None}
    if decision == "review":
        resolved = resolve_twins(store, photo, ordered, policy)
        if resolved is not None:
            ordered, decision, extra = resolved
            fields.update(extra)
    if decision != "accept":
        return ordered, decision, fields
    ev = best_evidence(store, photo, ordered)
    if ev is None:
        return ordered, decision, fields
    fields["appearance"] = ev.summary()
    contradicted, disagree, expected = ev.dead_band()
    if expected >= DEAD_EXPECTED and (contradicted >= DEAD_CONTRADICTED or disagree >= DEAD_DISAGREE):
        return ordered, "review", {**fields, "reason": "other_edition"}
    return ordered, decision, fields
