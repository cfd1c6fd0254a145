"""Self-test under photo conditions and confusable pairs: no labelled photos needed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError
from cover_id.evaluate.photos import photo_view, reference_image
from cover_id.evaluate.probe import Probe, Prober
from cover_id.evaluate.stats import ref_summary

if TYPE_CHECKING:
    from cover_id.pipeline import Identifier


def self_test(
    prober: Prober,
    samples: int = 200,
    views: int = 1,
    seed: int = 0,
    strength: float = 1.0,
    show_progress: bool = False,
) -> list[Probe]:
    """Synthetic phone photos of (a sample of) the references, identified by the pipeline."""
    import numpy as np

    from cover_id.progress import progress

    store = prober.identifier.store
    n = store.size
    rng = np.random.default_rng(seed)
    rows = list(range(n)) if samples <= 0 or samples >= n else sorted(rng.choice(n, samples, replace=False).tolist())
    probes: list[Probe] = []
    missing = 0
    with progress(len(rows) * views, "self-test", show_progress) as advance:
        for i in rows:
            image = reference_image(store, i)
            if image is None:
                missing += 1
                advance(views)
                continue
            for v in range(views):
                view = photo_view(image, np.random.default_rng([seed, i, v]), strength)
                probes.append(prober.probe(view, i, f"{store.records[i]['id']}#{v}", kind="selftest"))
                ok = sum(p.match == p.truth for p in probes)
                advance(info=f"top-1 {ok / len(probes):.0%}")
    if rows and missing == len(rows):
        raise CoverIdError(f"no reference image could be read from {store.refs_root}; was the refs folder moved?")
    return probes


def confusable_pairs(identifier: Identifier, top: int = 10, neighbours: int = 5, checked: int = 100) -> dict[str, list]:
    """References nearest each other: by embedding cosine, and geometrically verified."""
    import numpy as np

    store = identifier.store
    if store.size < 2:
        return {"by_embedding": [], "by_geometry": []}
    scores, rows_ = store.search(np.asarray(store.embeddings), min(store.size, neighbours + 1))
    pairs: dict[tuple[int, int], float] = {}
    for i, (row_scores, row) in enumerate(zip(scores, rows_)):
        for s, j in zip(row_scores.tolist(), row.tolist()):
            if j >= 0 and j != i:
                key = (min(i, j), max(i, j))
                pairs[key] = max(pairs.get(key, -1.0), float(s))
    ranked = sorted(pairs.items(), key=lambda kv: -kv[1])[:checked]
    rows = []
    reranker = identifier.reranker
    for (i, j), cos in ranked:
        a = reranker.match(store.features[i], store.features[j], j)
        b = reranker.match(store.features[j], store.features[i], i)
        g = a if (a.score, a.inliers) >= (b.score, b.inliers) else b
        rows.append({"a": i, "b": j, "cosine": round(cos, 4), "geom_score": round(g.score, 4), "inliers": g.inliers})
    by_geom = sorted(rows, key=lambda r: (-r["geom_score"], -r["inliers"], -r["cosine"]))
    by_geom = [r for r in by_geom[:top] if r["geom_score"] > 0 or r["inliers"] > 0]

    def named(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "a": ref_summary(store, r["a"]), "b": ref_summary(store, r["b"])} for r in rs]

    return {"by_embedding": named(rows[:top]), "by_geometry": named(by_geom)}
