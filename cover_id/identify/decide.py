"""Step: decide. The strongest view's best candidate -> accept / review / reject.

Everything the decision depends on lives here: the :class:`Thresholds`, the
:class:`DecisionPolicy` contract (a re-ranker names its policy, see
:meth:`cover_id.rerankers.base.Reranker.policy`), the choice of view and the
runner-up that competes for the same place in the photo (:func:`rival`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch

RIVAL_OVERLAP = 0.2  # outlines overlapping at least this much (IoU) compete for the same place


class Candidates(NamedTuple):
    """One view's verified candidates, best first, and their global-descriptor cosines by reference row."""

    ranked: "list[GeomMatch]"
    cosines: dict[int, float]


@dataclass
class Thresholds:
    """Decision thresholds on :attr:`GeomMatch.score`.

    Measured on 100 Nokia E63 photos against 358 DVD covers (whole 640 px
    photos): correct best score min 0.44 / p1 0.47 / median 0.74; best score
    with the true cover absent p95 0.37, max 0.53 (another edition of the same
    film); runner-up behind a correct match p99 0.50.

    A weak match must also explain its outline: another edition with the same
    artwork, or a shared photo, matches only a fragment of the cover, so few of
    the photo's keypoints inside the projected outline are inliers. On 1,158
    stress queries (synthetic photos of all 358 covers, degraded and original
    real photos) this floor turned 12 of 21 open-set accepts (other editions,
    explaining 0.04-0.07) into review, at the cost of 0.9 % of correct accepts.
    """

    accept_score: float = 0.42
    review_score: float = 0.30
    accept_margin: float = 0.12  # best - second needed to accept
    min_cosine: float = -1.0  # optional floor on the global-descriptor cosine
    min_explained: float = 0.08  # inliers / photo keypoints inside the outline, for weak matches
    explained_below: float = 0.60  # scores at or above this need no explained floor


class DecisionPolicy(ABC):
    """Turns the best candidate (and its rival) into 'accept', 'review' or 'reject'."""

    @abstractmethod
    def decide(self, best: "GeomMatch | None", second: "GeomMatch | None", cosine: float) -> str:
        """``second`` is the strongest other candidate for the same place in the photo (or None)."""


class ThresholdPolicy(DecisionPolicy):
    """The built-in policy for geometric scores: thresholds, a margin to the rival, an explained floor."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()

    def decide(self, best: "GeomMatch | None", second: "GeomMatch | None", cosine: float) -> str:
        t = self.thresholds
        if best is None or not best.sane or best.score < t.review_score:
            return "reject"
        margin = best.score - (second.score * (1.0 - common_evidence(best, second)) if second is not None else 0.0)
        if best.score < t.accept_score or margin < t.accept_margin or cosine < t.min_cosine:
            return "review"
        if best.score < t.explained_below and best.detail.get("explained", 1.0) < t.min_explained:
            return "review"  # a fragment of the cover (shared artwork), not the cover
        return "accept"


COMMON_SHARED = 0.8  # of the rival's inliers, at least this many also the best's ...
COMMON_SMALLER = 0.5  # ... and the rival holding at most this fraction of the best's inliers


def common_evidence(best: "GeomMatch", second: "GeomMatch") -> float:
    """How much of the rival's evidence is evidence the best shares with it (0..1), when it is only that.

    Cards of one set share a frame, a name bar and rules texts; covers of one studio share logos.
    A rival matched only on such common parts (its inliers are the best's own photo keypoints, and
    far fewer) is no alternative to the best: it is not held against it. A twin (another printing
    with the same art) matches as much as the best and is still held against it.
    """
    import numpy as np

    mine, theirs = best.detail.get("inlier_q"), second.detail.get("inlier_q")
    if mine is None or theirs is None or len(theirs) == 0 or second.inliers > COMMON_SMALLER * best.inliers:
        return 0.0
    shared = float(np.isin(theirs, mine).mean())
    return shared if shared >= COMMON_SHARED else 0.0


def decide(
    best: "GeomMatch | None", second: "GeomMatch | None", cosine: float, thresholds: Thresholds | None = None
) -> str:
    """'accept', 'review' or 'reject' for the best re-ranked candidate (the threshold policy)."""
    return ThresholdPolicy(thresholds).decide(best, second, cosine)


def _strength(item: "tuple[str, Candidates]") -> tuple[float, int, bool]:
    ranked = item[1][0]
    best = ranked[0] if ranked else None
    return (best.score, best.inliers, item[0] == "crop") if best else (0.0, 0, item[0] == "crop")


def choose(
    store: "IndexStore | None",
    variants: "dict[str, Candidates] | dict[str, tuple[list[GeomMatch], dict[int, float]]]",
    policy: "DecisionPolicy | Thresholds",
    exclude: int | None = None,
) -> "tuple[list[tuple[str, Candidates]], str]":
    """Order the views by geometric evidence and decide on the strongest one.

    ``variants`` maps a view name to (its candidates best first, their cosines).
    ``exclude`` drops one reference first: verify uses it to ask what the
    pipeline would say if that item were not in the collection.
    """
    if isinstance(policy, Thresholds):
        policy = ThresholdPolicy(policy)
    views = {k: Candidates(list(ranked), cos) for k, (ranked, cos) in variants.items()}
    if exclude is not None:
        views = {k: Candidates([m for m in c.ranked if m.ref_index != exclude], c.cosines) for k, c in views.items()}
    ordered = sorted(views.items(), key=_strength, reverse=True)
    if not ordered or not ordered[0][1].ranked:
        return ordered, "reject"
    ranked, cosines = ordered[0][1]
    best = ranked[0]
    return ordered, policy.decide(best, rival(store, best, ranked[1:]), cosines.get(best.ref_index, 0.0))


def rival(store: "IndexStore | None", best: "GeomMatch | None", others: "list[GeomMatch]") -> "GeomMatch | None":
    """The strongest other candidate competing for the same place in the photo.

    A second cover elsewhere in the photo (two DVDs on a table) is no reason to
    doubt the first: only candidates whose outline overlaps the best's count.
    """
    from cover_id.geometry import overlap
    from cover_id.identify.views import reference_outline

    if best is None or best.homography is None or store is None:
        return others[0] if others else None
    mine = reference_outline(store, best)
    for m in others:
        if m.homography is None or mine is None:
            return m
        theirs = reference_outline(store, m)
        if theirs is None or overlap(mine, theirs) >= RIVAL_OVERLAP:
            return m
    return None
