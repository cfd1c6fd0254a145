"""Step: several covers, one answer. Which cover is the photo of, and what else is in it?

Without ``--multi`` a photo gets one answer: the most prominent cover that is
recognised (largest, most central, most complete in the frame); the other
covers recognised elsewhere in the photo are listed as ``also_seen``. They
come from the candidates already verified in the whole-photo view: each one
must be accepted on its own evidence and sit somewhere else in the photo
(its outline overlapping no cover already listed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cover_id.identify.decide import Candidates, DecisionPolicy
    from cover_id.identify.result import Photo
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch

ELSEWHERE = 0.1  # outlines overlapping less than this (over the smaller) are different covers
MORE_PROMINENT = 1.5  # another cover must be this much more prominent to become the answer
MAX_ALSO_SEEN = 5


def prominence(outline: "np.ndarray", size: tuple[int, int]) -> float:
    """Area of the outline inside the frame (a fraction of the frame), damped by its distance from the centre."""
    import numpy as np

    from cover_id.geometry import _intersection

    w, h = size
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    inside = _intersection(outline, frame)
    if inside is None:
        return 0.0
    centre = outline.mean(axis=0) / np.array([w, h], np.float32) - 0.5  # -0.5..0.5 from the centre
    off = float(np.hypot(*np.clip(centre, -0.5, 0.5)) / np.hypot(0.5, 0.5))
    return inside / (w * h) * (1.0 - 0.5 * off)


def _outline(store: "IndexStore", view: "View", m: "GeomMatch") -> "np.ndarray | None":
    from cover_id.identify.views import reference_outline

    return reference_outline(store, m, view.to_photo) if m.homography is not None and m.sane else None


def arrange(
    store: "IndexStore",
    photo: "Photo",
    ordered: "list[tuple[str, Candidates]]",
    decision: str,
    policy: "DecisionPolicy",
) -> "tuple[list[tuple[str, Candidates]], str, list[tuple[View, GeomMatch, str]]]":
    """(the views with the most prominent accepted cover first, its decision, the other covers seen).

    Each other cover is (its view, its match, its decision).
    """
    from cover_id.geometry import overlap_over_smaller
    from cover_id.identify.decide import Candidates, rival

    if decision == "reject" or photo.image is None or not ordered or not ordered[0][1].ranked:
        return ordered, decision, []
    full = next(((name, c) for name, c in ordered if name == "full"), None)
    if full is None:
        return ordered, decision, []
    h, w = photo.image.shape[:2]
    strategy, (ranked, _) = ordered[0]
    best_view = next(v for v in photo.views if v.name == strategy)
    full_view = next(v for v in photo.views if v.name == "full")
    best = ranked[0]
    best_outline = _outline(store, best_view, best)
    if best_outline is None:
        return ordered, decision, []
    placed = [best_outline]
    seen: list[tuple["GeomMatch", "np.ndarray", str]] = []
    f_ranked, f_cos = full[1]
    for m in f_ranked:
        if len(seen) >= MAX_ALSO_SEEN or m.score <= 0:
            break
        if m.ref_index == best.ref_index:
            continue
        outline = _outline(store, full_view, m)
        if outline is None or any(overlap_over_smaller(outline, o) >= ELSEWHERE for o in placed):
            continue
        d = policy.decide(m, rival(store, m, [x for x in f_ranked if x is not m]), f_cos.get(m.ref_index, 0.0))
        if d != "accept":
            continue
        placed.append(outline)
        seen.append((m, outline, d))
    if not seen:
        return ordered, decision, []
    top = max(range(len(seen)), key=lambda k: prominence(seen[k][1], (w, h)))
    others = [(full_view, m, d) for m, _, d in seen]
    if decision == "accept" and prominence(seen[top][1], (w, h)) < MORE_PROMINENT * prominence(best_outline, (w, h)):
        return ordered, decision, others
    if decision != "accept" and prominence(seen[top][1], (w, h)) < prominence(best_outline, (w, h)):
        return ordered, decision, others
    # another cover is the photo's subject: it becomes the answer, the first one is listed instead
    winner = seen[top][0]
    others = [(best_view, best, decision)] + [o for k, o in enumerate(others) if k != top]
    rest = [m for m in f_ranked if m is not winner]
    return (
        [("full", Candidates([winner] + rest, f_cos))] + [(n, c) for n, c in ordered if n != "full"],
        "accept",
        others,
    )


def also_seen(
    store: "IndexStore", photo: "Photo", others: "list[tuple[View, GeomMatch, str]]", cosines: dict[int, float]
) -> list[dict[str, Any]]:
    """The other covers as JSON: catalog record, evidence, decision and outline in the photo's pixels."""
    import numpy as np

    from cover_id.geometry import project_box
    from cover_id.identify.result import describe
    from cover_id.identify.views import content_box

    out = []
    for view, m, d in others:
        to_original = np.diag([photo.back, photo.back, 1.0]) @ view.to_photo
        item = describe(store, m, cosines) or {}
        item["decision"] = d
        item["match_quad"] = project_box(m.homography, content_box(store.features[m.ref_index]), to_original)
        out.append(item)
    return out
