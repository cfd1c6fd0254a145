"""Offline re-decision: what the pipeline would decide for a probe under other thresholds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from cover_id.evaluate.probe import Probe
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.geometric import Thresholds


def redecide(probe: Probe, thresholds: Thresholds, exclude: int | None = None) -> tuple[str, int | None, float]:
    """(decision, reference row, score) the pipeline would give with ``thresholds``.

    ``exclude`` removes one reference from the candidates: with the true
    reference left out, a labelled photo becomes a photo of an item that is
    not in the collection. Where the probe kept its photo, the consistency step
    runs too (another edition, variant twins), as identify runs it.
    """
    from cover_id.identify import consistency
    from cover_id.identify.decide import ThresholdPolicy
    from cover_id.pipeline import choose

    variants = {
        k: (
            [m for m in v if exclude is None or probe.item(m.ref_index) != exclude],  # every view of the item goes
            probe.cosines.get(k) or {m.ref_index: float(probe.sims[m.ref_index]) for m in v},
        )
        for k, v in probe.variants.items()
    }
    # Without a store (probes built by hand) there are no outlines: the rival rule treats every rival as overlapping.
    ordered, decision = choose(cast("IndexStore", probe.store), variants, thresholds)
    if probe.replayable and ordered and ordered[0][1].ranked:
        assert probe.photo is not None and probe.store is not None
        policy = ThresholdPolicy(thresholds)
        ordered, decision, _ = consistency.check(probe.store, probe.photo, ordered, decision, policy, probe.quad)
    ranked = ordered[0][1][0] if ordered else []
    if not ranked:
        return "reject", None, 0.0
    return decision, probe.item(ranked[0].ref_index), ranked[0].score


def rates(probes: list[Probe], th: Thresholds) -> dict[str, Any]:
    """Outcome of ``th`` on labelled probes, including the leave-true-reference-out trials."""
    n = len(probes)
    closed = [p for p in probes if p.truth is not None]
    acc_ok = acc_wrong = review = reject = loo_fa = absent_fa = 0
    for p in probes:
        d, i, _ = redecide(p, th)
        if p.truth is None:
            absent_fa += d == "accept"
            continue
        acc_ok += d == "accept" and i == p.truth
        acc_wrong += d == "accept" and i != p.truth
        review += d == "review"
        reject += d == "reject"
        loo_fa += redecide(p, th, exclude=p.truth)[0] == "accept"
    trials = n + len(closed)
    return {
        "accepted_correct": acc_ok / max(1, len(closed)),
        "accepted_wrong": acc_wrong / max(1, len(closed)),
        "review": review / max(1, len(closed)),
        "rejected": reject / max(1, len(closed)),
        "absent_accepted": absent_fa / max(1, n - len(closed)) if n > len(closed) else None,
        "left_out_accepted": loo_fa / max(1, len(closed)),
        "false_accepts": acc_wrong + absent_fa + loo_fa,
        "trials": trials,
        "far": (acc_wrong + absent_fa + loo_fa) / max(1, trials),
    }
