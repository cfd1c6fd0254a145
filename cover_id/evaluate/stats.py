"""Statistics over probes: distributions, summaries, failures, score samples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cover_id.evaluate.probe import Probe
    from cover_id.index.store import IndexStore


def rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def distribution(values: list[float]) -> dict[str, Any]:
    import numpy as np

    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64)
    q = np.percentile(a, [5, 10, 25, 50, 75, 90])
    return {
        "n": len(a),
        "min": float(a.min()),
        "p5": float(q[0]),
        "p10": float(q[1]),
        "p25": float(q[2]),
        "median": float(q[3]),
        "p75": float(q[4]),
        "p90": float(q[5]),
        "max": float(a.max()),
        "negative": float((a < 0).mean()),
    }


def ref_summary(store: IndexStore, i: int | None) -> dict[str, Any] | None:
    if i is None:
        return None
    r = store.records[i]
    return {"id": r["id"], "name": r["name"], "filename": r["filename"]}


def summarize_probes(probes: list[Probe], store: IndexStore, top_k: int) -> dict[str, Any]:
    closed = [p for p in probes if p.truth is not None]
    absent = [p for p in probes if p.truth is None]
    n = max(1, len(closed))
    ranks = [p.emb_rank() for p in closed]
    dec = [p.result.get("decision") for p in closed]
    out: dict[str, Any] = {
        "n": len(probes),
        "n_in_collection": len(closed),
        "n_absent": len(absent),
        "top1": sum(p.match == p.truth for p in closed) / n,
        "top5": sum(p.top5() for p in closed) / n,
        "embedding_top1": sum(r == 0 for r in ranks) / n,
        "embedding_top5": sum(r is not None and r < 5 for r in ranks) / n,
        "embedding_recall_at_k": sum(r is not None and r < top_k for r in ranks) / n,
        "accepted_correct": sum(p.result.get("decision") == "accept" and p.match == p.truth for p in closed) / n,
        "accepted_wrong": sum(p.result.get("decision") == "accept" and p.match != p.truth for p in closed) / n,
        "review": dec.count("review") / n,
        "rejected": dec.count("reject") / n,
    }
    if absent:
        out["absent_accepted"] = sum(p.result.get("decision") == "accept" for p in absent) / len(absent)
        out["absent_rejected"] = sum(p.result.get("decision") == "reject" for p in absent) / len(absent)
    false_acc = sum(p.result.get("decision") == "accept" and p.match != p.truth for p in probes)
    out["false_accept_rate"] = false_acc / max(1, len(probes))
    return rounded(out)


def failures(probes: list[Probe], store: IndexStore) -> list[dict[str, Any]]:
    """Labelled photos that were not accepted correctly (or, if absent, were accepted)."""
    out = []
    for p in probes:
        d = p.result.get("decision")
        ok = (p.truth is None and d != "accept") or (p.truth is not None and d == "accept" and p.match == p.truth)
        if ok:
            continue
        s = p.summary(store)
        wrong_i, _ = p.best_wrong_geom()
        if p.match is not None and p.match != p.truth:
            wrong_i = p.match
        reason = (
            "accepted although not in the collection"
            if p.truth is None
            else "wrong reference accepted"
            if d == "accept"
            else "right reference, not confident"
            if p.match == p.truth
            else "wrong reference on top"
        )
        out.append(
            {
                **s,
                "reason": reason,
                "truth_ref": ref_summary(store, p.truth),
                "best_wrong_ref": ref_summary(store, wrong_i),
            }
        )
    return out


def score_samples(probes: list[Probe]) -> dict[str, list[float]]:
    """Geometric scores of correct matches, best wrong candidates and absent photos' top matches."""
    correct, wrong, absent = [], [], []
    for p in probes:
        if p.truth is None:
            absent.append(float(p.result.get("geom_score") or 0.0))
            continue
        correct.append(p.geom(p.truth))
        wrong.append(p.best_wrong_geom()[1])
    return {"correct": correct, "wrong": wrong, "absent": absent}
