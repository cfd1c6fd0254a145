"""Calibration: accept/review thresholds from labelled photos.

:func:`calibrate` only computes; :func:`store_calibration` is the one place
``cover-id verify`` writes to the index.
"""

from __future__ import annotations

import time
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError
from cover_id.evaluate.redecide import rates, redecide
from cover_id.evaluate.stats import rounded

if TYPE_CHECKING:
    from cover_id.evaluate.probe import Probe
    from cover_id.index.store import IndexStore
    from cover_id.rerankers.geometric import Thresholds

SAFETY_ABS = 0.03  # calibrated accept threshold sits this far above the worst negative...
SAFETY_REL = 0.15  # ...or this fraction of it, whichever is more
REVIEW_NEG_QUANTILE = 0.9  # review starts above 90 % of the best-wrong scores
MIN_CALIBRATION_PHOTOS = 20


def calibrate(
    probes: list[Probe], base: Thresholds, target_far: float = 0.0, current: Thresholds | None = None
) -> dict[str, Any]:
    """Pick accept/review score thresholds from labelled probes.

    Negatives are every absent photo, every wrong top match, and every labelled
    photo with its true reference left out (its best *wrong* candidate then
    competes alone). The accept threshold is set above all but ``target_far``
    of the negatives that would otherwise be accepted, plus a safety margin;
    review starts above most best-wrong scores. Other fields of ``base`` are
    kept; ``current`` (what the index uses now) is only reported as "before".
    """
    import math

    import numpy as np

    if not probes:
        raise CoverIdError("calibration needs labelled photos (--queries truth.csv)")
    if not 0.0 <= target_far < 1.0:
        raise CoverIdError(f"--target-far must be in [0, 1), not {target_far}")
    open_th = replace(base, accept_score=0.0, review_score=0.0)
    negatives: list[float] = []  # scores of wrong references that only the score threshold stops
    all_wrong: list[float] = []
    for p in probes:
        trials = [(redecide(p, open_th), p.truth)]
        if p.truth is not None:
            trials.append((redecide(p, open_th, exclude=p.truth), p.truth))
        for (d, i, score), truth in trials:
            if i is None or i == truth:
                continue
            all_wrong.append(score)
            if d == "accept":
                negatives.append(score)
    n_trials = len(probes) + sum(p.truth is not None for p in probes)
    allowed = math.floor(target_far * n_trials)
    negatives.sort(reverse=True)
    worst = negatives[allowed] if allowed < len(negatives) else 0.0
    accept = worst + max(SAFETY_ABS, SAFETY_REL * worst)
    defaults = type(base)()  # the built-in thresholds: calibration never goes below half of them
    accept = min(1.0, max(accept, 0.5 * defaults.accept_score))
    review_floor = 0.5 * defaults.review_score
    q = float(np.quantile(all_wrong, REVIEW_NEG_QUANTILE)) if all_wrong else 0.0
    review = min(accept, max(review_floor, q + SAFETY_ABS))
    chosen = replace(base, accept_score=round(accept, 4), review_score=round(review, 4))
    closed = sum(p.truth is not None for p in probes)
    return {
        "accept_score": chosen.accept_score,
        "review_score": chosen.review_score,
        "target_far": target_far,
        "n_photos": len(probes),
        "n_in_collection": closed,
        "n_absent": len(probes) - closed,
        "worst_negative": round(worst, 4),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "before": rounded(rates(probes, current or base)),
        "after": rounded(rates(probes, chosen)),
        "warning": (
            f"only {len(probes)} photos: thresholds are rough; label more photos for a sharper calibration"
            if len(probes) < MIN_CALIBRATION_PHOTOS
            else None
        ),
    }


def store_calibration(store: IndexStore, calibration: dict[str, Any], source: Path | None = None) -> None:
    """Write ``calibration`` into the index manifest (atomic save), where identify and serve read it."""
    from cover_id.rerankers.geometric import Thresholds

    names = {f.name for f in fields(Thresholds)}
    entry = {k: v for k, v in calibration.items() if k in names}
    entry.update(
        {
            k: calibration[k]
            for k in ("target_far", "n_photos", "n_in_collection", "n_absent", "date")
            if k in calibration
        }
    )
    entry["accepted_correct"] = calibration["after"]["accepted_correct"]
    entry["far"] = calibration["after"]["far"]
    if source is not None:
        entry["source"] = str(Path(source).resolve())
    store.manifest["calibration"] = entry
    store.save(store.path)
