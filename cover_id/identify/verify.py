"""Step: verify. Every shortlisted reference, checked geometrically in every view.

One matching pass per reference serves all views (see
:meth:`cover_id.rerankers.base.Reranker.match_views`); candidates are
verified in parallel because matching and RANSAC release the GIL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from cover_id.identify.decide import Candidates
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.base import GeomMatch, Reranker


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
    from cover_id.features import desc_float
    from cover_id.identify.decide import Candidates

    qdesc = desc_float(photo.feats.desc)
    pairs = [(v.feats, v.local) for v in views]

    def one(i: int) -> "list[GeomMatch]":
        return reranker.match_views(qdesc, pairs, store.features[i], i)

    per_view: list[list[GeomMatch]] = [[] for _ in views]
    for matches in pool.map(one, rows):
        for bucket, m in zip(per_view, matches):
            bucket.append(m)
    out = {}
    for vi, (view, ranked) in enumerate(zip(views, per_view)):
        ranked.sort(key=lambda m: (-m.score, -m.inliers, m.ref_index))
        cos = {i: float(cosines[vi, j]) for j, i in enumerate(rows)} if cosines is not None else {}
        out[view.name] = Candidates(ranked, cos)
    return out
