"""``cover-id verify``: every measurement assembled into one JSON-able report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError
from cover_id.evaluate.advice import margin_guidance
from cover_id.evaluate.calibrate import calibrate, store_calibration
from cover_id.evaluate.labelled import label_photos, read_truth
from cover_id.evaluate.probe import Probe, Prober
from cover_id.evaluate.selftest import confusable_pairs, self_test
from cover_id.evaluate.stats import distribution, failures, ref_summary, rounded, summarize_probes

if TYPE_CHECKING:
    from cover_id.index.store import IndexStore


@dataclass
class VerifyRun:
    """What :func:`run_verify` measured.

    ``report`` is plain JSON (what ``--json`` prints); ``store`` and ``probes``
    are the objects behind it, for the HTML report and for scripts.
    """

    report: dict[str, Any]
    store: IndexStore
    probes: dict[str, list[Probe]] = field(default_factory=dict)


def run_verify(
    index: Path,
    queries: Path | None = None,
    samples: int = 200,
    views: int = 1,
    seed: int = 0,
    strength: float = 1.0,
    do_calibrate: bool = False,
    target_far: float = 0.0,
    settings: dict[str, Any] | None = None,
    show_progress: bool = False,
    pairs: int = 10,
) -> VerifyRun:
    """Every measurement of ``cover-id verify``: the JSON-able report plus the probes behind it.

    ``samples`` < 0 skips the self-test; ``do_calibrate`` stores the chosen
    thresholds in the index (the only write verify makes).
    """
    from cover_id.pipeline import Identifier

    if do_calibrate and queries is None:
        raise CoverIdError("--calibrate needs labelled photos: add --queries truth.csv")
    t0 = time.perf_counter()
    identifier = Identifier.from_index(Path(index), settings)
    store = identifier.store
    if store.size == 0:
        raise CoverIdError(f"index {index} holds no references")
    truth = read_truth(queries, store) if queries is not None else None
    prober = Prober(identifier)
    top_k = int(identifier.settings["top_k"])

    selftest = self_test(prober, samples, views, seed, strength, show_progress) if samples >= 0 else []
    report: dict[str, Any] = {
        "index": str(Path(index).resolve()),
        "encoder": store.encoder_spec.get("name"),
        "references": store.size,
        "projection": bool(store.projection is not None),
        "thresholds": {
            "source": identifier.threshold_source(),
            **{f.name: getattr(identifier.thresholds, f.name) for f in fields(identifier.thresholds)},
        },
        "seed": seed,
    }
    st = summarize_probes(selftest, store, top_k)
    st["views_per_reference"] = views
    st["references_tested"] = len({p.truth for p in selftest})
    report["self_test"] = st
    geom_margins = [p.geom(p.truth) - p.best_wrong_geom()[1] for p in selftest if p.truth is not None]
    cos_margins = [float(p.sims[p.truth]) - p.best_wrong_cos()[1] for p in selftest if p.truth is not None]
    gd, cd = rounded(distribution(geom_margins)), rounded(distribution(cos_margins))
    report["margins"] = {
        "geometric": gd,
        "embedding": cd,
        "guidance": margin_guidance(
            gd, cd, st.get("embedding_recall_at_k") if selftest else None, store.encoder_spec.get("name", "")
        ),
    }
    worst = sorted((p for p in selftest), key=lambda p: p.geom(p.truth) - p.best_wrong_geom()[1])
    report["self_test"]["worst"] = [
        {
            **p.summary(store),
            "truth_ref": ref_summary(store, p.truth),
            "best_wrong_ref": ref_summary(store, p.best_wrong_geom()[0]),
        }
        for p in worst[:10]
    ]

    report["confusable_pairs"] = confusable_pairs(identifier, top=pairs)

    photos: list[Probe] = []
    if truth is not None:
        photos, errors = label_photos(prober, truth, show_progress)
        if not photos:
            raise CoverIdError(f"none of the photos in {queries} could be read (first: {errors[0]['error']})")
        ph = summarize_probes(photos, store, top_k)
        ph["errors"] = errors
        ph["failures"] = failures(photos, store)
        ph["margins"] = {
            "geometric": rounded(
                distribution([p.geom(p.truth) - p.best_wrong_geom()[1] for p in photos if p.truth is not None])
            ),
            "embedding": rounded(
                distribution([float(p.sims[p.truth]) - p.best_wrong_cos()[1] for p in photos if p.truth is not None])
            ),
        }
        report["photos"] = ph
        if do_calibrate:
            from cover_id.rerankers.geometric import Thresholds

            cal = calibrate(photos, Thresholds(), target_far, current=identifier.thresholds)
            store_calibration(store, cal, queries)
            report["calibration"] = cal
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return VerifyRun(report, store, {"selftest": selftest, "photos": photos})
