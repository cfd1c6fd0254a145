"""Step: retrieve. Views -> a short list of candidate references.

Each view is embedded and its nearest references found in the vector index;
the references most voted for by the photo's strongest keypoints join them; the lists
are rank-fused (:func:`fuse`). Every read of the index's vectors goes
through this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from cover_id.encoders.base import Encoder
    from cover_id.features import Features
    from cover_id.identify.views import View
    from cover_id.index.store import IndexStore

FUSION_K = 10.0  # reciprocal-rank fusion constant: 1 / (K + rank)
VOTE_KEYPOINTS = 500  # the photo's strongest keypoints that vote (each costs a search of the vote index)
LIKELY = 2  # of every view's vector-search hits, how many are verified before the votes are in


def embed(encoder: "Encoder", store: "IndexStore", images: "list[np.ndarray]", feats: "list[Features]") -> "np.ndarray":
    """Index-space vectors (the extracted keypoints when the encoder ``supports_features``)."""
    from cover_id.encoders import encode

    return store.embed(encode(encoder, images, feats))


def embed_views(encoder: "Encoder", store: "IndexStore", views: "list[View]") -> "np.ndarray":
    images = [] if encoder.supports_features else [v.image() for v in views]
    return embed(encoder, store, images, [v.feats for v in views])


def search(store: "IndexStore", vectors: "np.ndarray", k: int) -> list[list[tuple[int, float]]]:
    """Per query row: (reference row, cosine) best first."""
    scores, idx = store.search(vectors, k)
    return [[(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(idx, scores)]


def likely(hits: list[list[tuple[int, float]]], n: int = LIKELY) -> list[int]:
    """The best ``n`` of every view's vector-search hits: on the fused shortlist whatever the votes say
    (all of them were, over the dev sets' photos), so they can be verified while the votes are counted."""
    return list(dict.fromkeys(i for row in hits for i, _ in row[:n]))


def fuse(rankings: list[list[int]], limit: int, k: float = FUSION_K) -> list[int]:
    """Reciprocal-rank fusion of several candidate lists; the best ``limit`` (ties: first seen first)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda i: -score[i])[:limit]


def votes(store: "IndexStore", views: "list[View]", top_k: int) -> list[tuple[int, float]]:
    """The references most voted for by the strongest keypoints of the view that has the most (reference row, votes)."""
    from cover_id.features import strongest

    widest = max(views, key=lambda v: len(v.feats))
    return store.voter().shortlist(strongest(widest.feats, VOTE_KEYPOINTS), top=top_k) if store.has_voter else []


def shortlist(
    store: "IndexStore",
    views: "list[View]",
    vectors: "np.ndarray",
    top_k: int,
    limit: int,
    voted: list[tuple[int, float]] | None = None,
    hits: list[list[tuple[int, float]]] | None = None,
) -> "tuple[list[int], np.ndarray | None]":
    """The fused candidates to verify, and every view's cosine to each of them ((views, candidates) or None).

    ``voted`` (:func:`votes`) and ``hits`` (:func:`search` of ``vectors``): when already found (identify
    counts the votes beside the embedding and starts verifying :func:`likely` hits before they are in).
    """
    import numpy as np

    if hits is None:
        hits = search(store, vectors, top_k)
    if voted is None:
        voted = votes(store, views, top_k)
    rankings = [[i for i, _ in voted]] + [[i for i, _ in row] for row in hits]
    rows = fuse(rankings, limit)
    cosines = np.asarray(vectors, np.float32) @ store.embeddings[rows].T if rows else None
    return rows, cosines
