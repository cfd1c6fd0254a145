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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cover_id.detectors.base import Quad
    from cover_id.identify.appearance import RegionCell
    from cover_id.identify.decide import Candidates, DecisionPolicy
    from cover_id.identify.result import Photo
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch

MIN_CELL_KEYPOINTS = 3  # a cell with fewer photo keypoints says nothing (glare, blur, plain print)
# Another edition: a quarter of the cover expected to hold at least DEAD_EXPECTED of the match's
# inliers holds none, and either DEAD_CONTRADICTED of its cells contradict (own keypoints, none
# matching, other pixels) or DEAD_UNLIKE of its informative cells look unlike the reference (other
# pixels, or much flatter than the reference: a plain title block, the table beyond a smaller
# edition); a quarter expected to hold only DEAD_EXPECTED_LOW needs DEAD_UNLIKE_LOW. Measured on
# every accepted correct dev photo (dvd-covers 100, books 53, paintings 32): such bands reach at
# most 0.5 contradicted, 0.57 unlike (expected >= 15) and 0.75 unlike (expected >= 8); on the
# generated editions that the contradiction rule alone let through, 31 of 68 reach these.
DEAD_CONTRADICTED = 0.6
DEAD_UNLIKE = 0.65
DEAD_EXPECTED = 15.0
DEAD_UNLIKE_LOW = 0.85
DEAD_EXPECTED_LOW = 8.0
# A band expected to hold SILENT_EXPECTED inliers or more holds none, although the photo shows texture of
# its own there (SILENT_TEXTURE of the keypoints the reference has there, at the match's photo/reference
# ratio: not glare, not a dark or blurred corner) and SILENT_UNLIKE of its informative cells look unlike
# the reference: the cover has a region of its own (a new title block) that the match does not explain.
# Measured on the dev photos of correct matches: such bands expect at most 18 inliers, 31 on one book photo
# that is itself another edition (books/037: another title layout, labelled as the same book); on the
# generated retitled editions 26-68.
SILENT_EXPECTED = 35.0
SILENT_UNLIKE = 0.4
SILENT_TEXTURE = 0.3
FLAT_CONTRAST = 0.4  # a cell whose texture is below this fraction of the matched cells' (relative to the reference's)
BAND_VISIBLE = 0.6  # a band counts when this much of it lies inside the photo


def _badness(band: tuple[float, float, float, float]) -> float:
    """How far a dead band is past the edition thresholds (>= 1: another edition; the larger, the surer)."""
    contradicted, unlike, expected, texture = band
    if expected >= DEAD_EXPECTED:
        bad = max(contradicted / DEAD_CONTRADICTED, unlike / DEAD_UNLIKE)
    else:
        bad = unlike / DEAD_UNLIKE_LOW if expected >= DEAD_EXPECTED_LOW else 0.0
    if expected >= SILENT_EXPECTED and texture >= SILENT_TEXTURE:
        bad = max(bad, unlike / SILENT_UNLIKE)
    return bad


@dataclass
class Evidence:
    """Per cell of the reference's content box: appearance and keypoints."""

    ncc: "np.ndarray"  # correlation, NaN where uninformative
    keypoints: "np.ndarray"  # the photo's keypoints falling in the cell
    inliers: "np.ndarray"  # of which inliers of the match
    reference: "np.ndarray"  # the reference's own keypoints in the cell
    visible: "np.ndarray"  # the cell lies inside the photo
    contrast: "np.ndarray | None" = None  # the photo's texture / the reference's per cell (NaN as ncc)

    def summary(self) -> dict[str, Any]:
        from cover_id.identify.appearance import Agreement

        a = Agreement(self.ncc, self.visible)
        contradicted, unlike, expected, texture = self.dead_band()
        return {
            "agree": round(a.agree, 3),
            "cells": a.informative,
            "contradicted": int(self.contradicted.sum()),
            "dead_band": {
                "contradicted": round(contradicted, 3),
                "disagree": round(unlike, 3),
                "expected_inliers": round(expected, 1),
                "texture": round(texture, 2),
            },
        }

    def dead_band(self) -> tuple[float, float, float, float]:
        """The worst band without a single inlier that should hold at least :data:`DEAD_EXPECTED_LOW`:
        (fraction of its cells contradicted, fraction of its informative cells unlike the reference,
        inliers expected there, the photo's keypoints there relative to the reference's); zeros when
        there is none.

        A band is a quarter of the rows or columns, mostly inside the photo. The inliers it should hold
        are the match's inliers spread like the reference's own keypoints; a band expected to hold many
        and holding none, whose pixels are not the reference's, is a region of the cover that is not the
        reference's: another title block, the artwork moved onto another layout.
        """
        import numpy as np

        contradicted = self.contradicted
        informative = np.isfinite(self.ncc)
        unlike = self.unlike
        total_inliers, total_ref = int(self.inliers.sum()), max(1, int(self.reference.sum()))
        # photo keypoints per reference keypoint where the cover is seen: what a band of the cover should show
        ratio = float(self.keypoints[self.visible].sum()) / max(1, int(self.reference[self.visible].sum()))
        worst = (0.0, 0.0, 0.0, 0.0)
        rows, cols = self.ncc.shape
        for axis, n in ((0, rows), (1, cols)):
            width = max(1, n // 4)
            for start in range(0, n - width + 1):
                band = (
                    (slice(start, start + width), slice(None))
                    if axis == 0
                    else (slice(None), slice(start, start + width))
                )
                visible = float(self.visible[band].mean())
                if visible < BAND_VISIBLE or self.inliers[band].sum() > 0:
                    continue
                expected = total_inliers * float(self.reference[band].sum()) / total_ref
                if expected < DEAD_EXPECTED_LOW:
                    continue
                seen = int(informative[band].sum())
                share = float(unlike[band].sum()) / seen if seen >= max(2, informative[band].size // 2) else 0.0
                against = float(contradicted[band].mean()) if visible >= 0.9 else 0.0
                texture = float(self.keypoints[band].sum()) / max(1.0, ratio * float(self.reference[band].sum()))
                worst = max(worst, (against, share, expected, texture if visible >= 0.9 else 0.0), key=_badness)
        return worst

    @property
    def unlike(self) -> "np.ndarray":
        """Informative cells whose pixels disagree with the reference or are much flatter than it."""
        import numpy as np

        from cover_id.identify.appearance import AGREE_NCC

        informative = np.isfinite(self.ncc)
        out = informative & (np.nan_to_num(self.ncc, nan=1.0) < AGREE_NCC)
        if self.contrast is not None and informative.any():
            matched = informative & (self.inliers > 0)
            typical = float(np.nanmedian(self.contrast[matched if matched.any() else informative]))
            if typical > 0:
                out |= informative & (np.nan_to_num(self.contrast, nan=np.inf) < FLAT_CONTRAST * typical)
        return out

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
    return Evidence(agreement.ncc, keypoints, inliers, refpts, agreement.visible, agreement.contrast)


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


TWIN_COSINE = 0.75  # global-descriptor cosine above which two references may be variants (cards: >= 0.94 vs <= 0.48)
REGION_PAIRS = 2  # a place is a variant region when at least this many twin pairs differ there
REGION_SAMPLE = 64  # twin pairs looked at, at most
REGION_SCAN = 512  # references whose neighbours are looked at for twins, at most (spread over the collection)
REGION_SHAPE = (240, 240)  # the normalised grid variant regions are kept on
# A variant-region cell shows another print when another known print leaves at most OTHER_BETTER of
# what the reference leaves unexplained or nothing about it looks like the reference (UNLIKE). Measured on the
# generated cards: the reference's own photos leave 0.02-0.5 unexplained (0.8 once, under glare),
# other set codes 0.5-0.65 against 0.1-0.4 for another print, other rarity stamps 0.95-1.0.
OTHER_BETTER = 0.7
UNLIKE = 0.9

REGION_PRINTS = 16  # twin pairs whose prints are kept as known alternatives
# The regions are found again once the references deleted or appended since add up to this share of the
# collection they were found in. Finding them searches REGION_SCAN references against the whole collection
# (6 s at 10,000 references on 2 cores, more beyond): a reference added while serving must not cost the next
# photo that.
REGION_REFRESH = 0.05


@dataclass
class VariantRegions:
    """Where a collection's variants differ (normalised grid over the content box) and prints that differ there."""

    mask: "np.ndarray"
    prints: "list[np.ndarray]"  # BGR uint8, each in its reference's comparison frame


def variant_twins(store: "IndexStore") -> list[tuple[int, int]]:
    """Pairs of references (i < j) that are variants of each other: near-identical global descriptors.

    Large collections are sampled (:data:`REGION_SCAN` references): the regions need a few pairs, not all.
    """
    import numpy as np

    pairs: set[tuple[int, int]] = set()
    scan = np.unique(np.linspace(0, store.size - 1, min(store.size, REGION_SCAN)).astype(np.int64))
    for start in range(0, len(scan), 256):
        rows = scan[start : start + 256]
        scores, near = store.search(np.asarray(store.embeddings[rows], np.float32), 3)
        for q, row in enumerate(rows):
            for s, j in zip(scores[q], near[q]):
                if j >= 0 and j != row and s >= TWIN_COSINE:
                    pairs.add((int(min(row, j)), int(max(row, j))))
    return sorted(pairs)


def variant_regions(store: "IndexStore") -> "VariantRegions | None":
    """Where this collection's variants differ from each other, on a normalised grid over the content box.

    A trading-card set prints the same art with another set code, rarity stamp or foil; a
    collection holding such twins shows where printings differ. A match is accepted only when
    the photo agrees with the reference there too (a printing absent from the collection must
    not pass as its twin). None when the collection has no such twins (DVDs, books, paintings).
    Kept with the open folder and in it (:data:`REGIONS_FILE`, so the next process need not look
    again), and found again once the references deleted or appended (added, changed) since add up
    to more than :data:`REGION_REFRESH` of the collection they were found in.
    """
    import cv2
    import numpy as np

    from cover_id.identify import appearance
    from cover_id.identify.views import content_box

    cached = store.shared.get("variant_regions")
    if cached is None:
        cached = _load_regions(store)
    appended = store.appended
    if cached is not None:
        size, seen, regions = cached
        if abs(store.size - size) + max(0, appended - seen) <= REGION_REFRESH * size:
            store.shared["variant_regions"] = cached
            return regions
    heat = np.zeros(REGION_SHAPE, np.float32)
    prints: list[np.ndarray] = []
    pairs = variant_twins(store)
    if len(pairs) > REGION_SAMPLE:
        pairs = [pairs[k] for k in np.linspace(0, len(pairs) - 1, REGION_SAMPLE).astype(int)]
    for i, j in pairs:
        relation = twin_relation(store, i, j)
        first, second = appearance.reference_image(store, i), appearance.reference_image(store, j)
        if relation is None or first is None or second is None:
            continue
        a, b, mask = appearance.difference(first, second, relation, content_box(store.features[i]))
        if mask.mean() > 0.5:  # not twins after all
            continue
        if len(prints) < 2 * REGION_PRINTS:
            prints += [np.clip(np.nan_to_num(x, nan=0.0), 0, 255).astype(np.uint8) for x in (a, b)]
        grid = cv2.resize(mask.astype(np.float32), REGION_SHAPE[::-1], interpolation=cv2.INTER_AREA)
        heat += cv2.dilate((grid > 0.2).astype(np.float32), np.ones((3, 3), np.uint8))
    found = heat >= REGION_PAIRS
    regions = VariantRegions(found.astype(np.float32), prints) if found.any() else None
    store.shared["variant_regions"] = (store.size, appended, regions)
    _save_regions(store, (store.size, appended, regions))
    return regions


REGIONS_FILE = "variant_regions.npz"  # a cache in the index folder: safe to delete, found again when missing


def _load_regions(store: "IndexStore") -> "tuple[int, int, VariantRegions | None] | None":
    """(size and appended count found at, regions) from the index folder, or None without a readable file."""
    import numpy as np

    if store.path is None:
        return None
    try:
        with np.load(Path(store.path) / REGIONS_FILE, allow_pickle=False) as z:
            size, seen = (int(x) for x in z["size"])
            if "mask" not in z.files:
                return size, seen, None
            prints = [z[f"print_{k}"] for k in range(int(z["prints"][0]))]
            return size, seen, VariantRegions(np.asarray(z["mask"], np.float32), prints)
    except (OSError, ValueError, KeyError):  # missing, torn by hand, or from another version: look again
        return None


def _save_regions(store: "IndexStore", found: "tuple[int, int, VariantRegions | None]") -> None:
    """Write the regions beside the index, atomically; a folder that cannot be written keeps none."""
    import numpy as np

    from cover_id.store_io import save_npz

    if store.path is None:
        return
    size, seen, regions = found
    arrays: dict[str, Any] = {"size": np.array([size, seen], np.int64)}
    if regions is not None:
        arrays.update(mask=regions.mask, prints=np.array([len(regions.prints)], np.int64))
        arrays.update({f"print_{k}": p for k, p in enumerate(regions.prints)})
    try:
        save_npz(Path(store.path) / REGIONS_FILE, arrays)
    except OSError:
        pass


def variant_cells(
    store: "IndexStore", photo: "Photo", ordered: "list[tuple[str, Candidates]]"
) -> "list[RegionCell] | None":
    """The best match compared with the photo in every seen cell of the collection's variant regions
    (None: the collection has none)."""
    from cover_id.identify import appearance
    from cover_id.identify.views import content_box

    regions = variant_regions(store)
    if regions is None or not ordered or not ordered[0][1].ranked or photo.image is None:
        return None
    strategy, (ranked, _) = ordered[0]
    m = ranked[0]
    reference = appearance.reference_image(store, m.ref_index)
    if reference is None or m.homography is None:
        return None
    view = next(v for v in photo.views if v.name == strategy)
    box = content_box(store.features[m.ref_index])
    return appearance.region_cells(photo.image, ref_to_processed(view, m), reference, box, regions.mask, regions.prints)


# The cover's detected outline against the matched reference. When the outline is plausible
# (OUTLINE_SURE), the match's inliers lie inside it (OUTLINE_INSIDE), yet the reference would continue past
# its edge (more than OUTLINE_BEYOND of the reference's part inside the photo lies outside the outline) and
# explains less than OUTLINE_EXPLAINED of it, the cover is not the reference: its artwork moved onto
# another layout, cut where the cover ends. A frame or a case around the reference contains the whole of it
# (nothing beyond); another cover lying over part of the reference holds none of its inliers. Measured on
# the accepted dev photos with a detected outline (dvd-covers 100, books 50, paintings 35): outlines the
# reference explains less than half of (4 paintings: 0.16-0.46) all contain the whole reference (frames,
# walls); on the generated relaid-out editions caught: 0.28-0.43 explained, 0.13-0.33 beyond. Only what the
# photo shows counts: the reference's part beyond the photo's edge is neither inside nor beyond.
OUTLINE_SURE = 0.5
OUTLINE_INSIDE = 0.9
OUTLINE_BEYOND = 0.1
OUTLINE_EXPLAINED = 0.5


@dataclass
class OutlineFit:
    """How the matched reference sits in the cover's detected outline."""

    explained: float  # of the outline's area, the part the reference covers
    beyond: float  # of the reference's area inside the photo, the part outside the outline
    inside: float  # of the match's inliers, the part inside the outline

    @property
    def other_cover(self) -> bool:
        return self.inside >= OUTLINE_INSIDE and self.beyond > OUTLINE_BEYOND and self.explained < OUTLINE_EXPLAINED


def outline_fit(store: "IndexStore", photo: "Photo", view: "View", m: "GeomMatch", quad: "Quad") -> OutlineFit | None:
    """The match's reference (its printed content) against a detected outline, in the processed photo."""
    import cv2
    import numpy as np

    from cover_id.identify.views import reference_outline

    if photo.image is None:
        return None
    ref = reference_outline(store, m, view.to_photo)
    if ref is None:
        return None
    h, w = photo.image.shape[:2]
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    outline = np.asarray(quad.corners, np.float32)
    try:
        seen, ref_seen = cv2.intersectConvexConvex(ref, frame)
        common, _ = cv2.intersectConvexConvex(ref_seen, outline) if seen > 0 else (0.0, None)
    except cv2.error:  # not convex: an odd homography, no evidence either way
        return None
    area = abs(float(cv2.contourArea(outline)))
    if seen <= 0 or area <= 0:
        return None
    q = np.asarray(m.detail.get("inlier_q", []), np.int64)
    inside = 1.0
    if len(q):
        pts = cv2.perspectiveTransform(view.feats.xy[q].reshape(-1, 1, 2).astype(np.float64), view.to_photo)
        inside = float(np.mean([cv2.pointPolygonTest(outline, (float(x), float(y)), False) >= 0 for x, y in pts[:, 0]]))
    return OutlineFit(float(common) / area, 1.0 - float(common) / float(seen), inside)


def check(
    store: "IndexStore",
    photo: "Photo",
    ordered: "list[tuple[str, Candidates]]",
    decision: str,
    policy: "DecisionPolicy",
    quad: "Quad | None" = None,
) -> "tuple[list[tuple[str, Candidates]], str, dict[str, Any]]":
    """(the views, possibly re-ordered, the decision, the JSON fields ``reason``, ``twin`` and ``appearance``).

    ``quad`` is the detected outline of the cover being answered for, if any.
    """
    fields: dict[str, Any] = {"reason": None, "twin": None, "appearance": None, "variant_regions": None}
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
    if _badness(ev.dead_band()) >= 1.0:
        return ordered, "review", {**fields, "reason": "other_edition"}
    if quad is not None and quad.score >= OUTLINE_SURE:
        strategy, (ranked, _) = ordered[0]
        view = next(v for v in photo.views if v.name == strategy)
        fit = outline_fit(store, photo, view, ranked[0], quad)
        if fit is not None and fit.other_cover:
            return ordered, "review", {**fields, "reason": "other_edition"}
    cells = variant_cells(store, photo, ordered)
    if cells is not None:
        differ = [
            c for c in cells if c.reference >= UNLIKE or (c.reference > 0.3 and c.other < OTHER_BETTER * c.reference)
        ]
        fields["variant_regions"] = {"cells": len(cells), "differ": len(differ)}
        if differ or not cells:  # another print, or nothing of where prints differ could be seen
            return ordered, "review", {**fields, "reason": "variant"}
    return ordered, decision, fields


def contradicted(result: dict[str, Any]) -> bool:
    """The answer was held back by evidence against the match (another edition, another printing),
    not by a lack of evidence: a closer look at the same photo must not overturn it."""
    if result.get("reason") == "other_edition":
        return True
    regions = result.get("variant_regions") or {}
    return result.get("reason") == "variant" and regions.get("differ", 0) > 0
