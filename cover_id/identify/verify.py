"""Step: verify. Every shortlisted reference, checked geometrically in every view.

One matching pass per reference serves all views (see
:meth:`cover_id.rerankers.base.Reranker.match_views`); candidates are
verified in parallel because matching and RANSAC release the GIL, and the
likeliest can start before the shortlist is complete (:class:`Verifier`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    import numpy as np

    from cover_id.identify.decide import Candidates
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch, Reranker


class Verifier:
    """Verifies references in every view of one photo on a thread pool, each reference at most once.

    :meth:`start` may be called early with references that will probably be on the shortlist
    (identify starts the vector search's best while the keypoint votes are still being counted);
    :meth:`candidates` then waits only for the rest. A reference's verification does not depend
    on when it ran, so the answer is the same as verifying the shortlist in one go.
    """

    def __init__(
        self, reranker: "Reranker", pool: "ThreadPoolExecutor", store: "IndexStore", photo: "View", views: "list[View]"
    ) -> None:
        from cover_id.features import desc_float

        self.reranker, self.pool, self.store, self.views = reranker, pool, store, views
        self.qdesc = desc_float(photo.feats.desc)
        self.pairs = [(v.feats, v.local) for v in views]
        self.jobs: dict[int, Future[list[GeomMatch]]] = {}

    def _one(self, i: int) -> "list[GeomMatch]":
        return self.reranker.match_views(self.qdesc, self.pairs, self.store.features[i], i)

    def start(self, rows: list[int]) -> None:
        for i in rows:
            if i not in self.jobs:
                self.jobs[i] = self.pool.submit(self._one, i)

    def candidates(self, rows: list[int], cosines: "np.ndarray | None") -> "dict[str, Candidates]":
        """Per view name: its candidates among ``rows``, best first (score, inliers, row), and their cosines."""
        from cover_id.identify.decide import Candidates

        self.start(rows)
        per_view: list[list[GeomMatch]] = [[] for _ in self.views]
        for i in rows:
            for bucket, m in zip(per_view, self.jobs[i].result()):
                bucket.append(m)
        out = {}
        for vi, (view, ranked) in enumerate(zip(self.views, per_view)):
            ranked.sort(key=lambda m: (-m.score, -m.inliers, m.ref_index))
            cos = {i: float(cosines[vi, j]) for j, i in enumerate(rows)} if cosines is not None else {}
            out[view.name] = Candidates(ranked, cos)
        return out


def verify(
    reranker: "Reranker",
    pool: "ThreadPoolExecutor",
    store: "IndexStore",
    photo: "View",
    views: "list[View]",
    rows: list[int],
    cosines: "np.ndarray | None",
) -> "dict[str, Candidates]":
    """Per view name: its candidates best first (score, inliers, row) and their cosines.

    ``photo`` is the whole photo's view: every view's ``local`` indexes its keypoints.
    """
    return Verifier(reranker, pool, store, photo, views).candidates(rows, cosines)
