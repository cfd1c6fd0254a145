"""How reliably does an index tell its references apart? (``cover-id verify``)

Four measurements, all through the real identify pipeline:

* **self-test**: every (sampled) reference is turned into a synthetic phone
  photo (perspective, rotation, scale, blur, noise, JPEG, lighting, glare,
  occlusion, cluttered background) and identified. Matching a reference
  against its own pixels proves nothing, so this is the headline number.
* **confusable pairs**: references nearest to each other by embedding, with
  their geometric agreement: the items users will see mixed up.
* **margins**: correct score minus best wrong score, per query.
* **labelled photos** (``photo,reference`` CSV): accuracy, accept/review/
  reject rates, failures; ``calibrate`` picks accept/review thresholds from
  them and stores them in the index manifest.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

    from cover_id.index_store import IndexStore
    from cover_id.pipeline import Identifier
    from cover_id.rerankers.geometric import GeomMatch, Thresholds

VIEW_MAX_SIDE = 640  # references are shrunk to this before being "photographed"
THUMB_SIDE = 160
SAFETY_ABS = 0.03  # calibrated accept threshold sits this far above the worst negative...
SAFETY_REL = 0.15  # ...or this fraction of it, whichever is more
REVIEW_NEG_QUANTILE = 0.9  # review starts above 90 % of the best-wrong scores
MIN_CALIBRATION_PHOTOS = 20


# ---- synthetic phone photos ----------------------------------------------------------
def photo_view(cover: "np.ndarray", rng: "np.random.Generator", strength: float = 1.0) -> "np.ndarray":
    """``cover`` as a phone would photograph it: on a cluttered table, tilted, lit, blurred.

    Lighting, glare and occlusion act on the cover itself; it is then
    perspective-warped, rotated and scaled into a background scene, and the
    whole scene gets blur, noise and JPEG compression.
    """
    import cv2

    from cover_id.synth import AugmentOptions, make_background, place_in_scene, photo_augment

    h, w = cover.shape[:2]
    if max(h, w) > VIEW_MAX_SIDE:
        s = VIEW_MAX_SIDE / max(h, w)
        cover = cv2.resize(cover, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
        h, w = cover.shape[:2]
    none = AugmentOptions.none()
    on_cover = none.only(lighting=0.8, glare=0.35, occlusion=0.4)
    cover = photo_augment(cover, rng, strength, on_cover)
    # The scene is a little larger than the cover, landscape like most phone photos.
    side = int(max(h, w) * rng.uniform(1.15, 1.5))
    scene_wh = (side, int(side * 0.75)) if rng.random() < 0.7 else (int(side * 0.75), side)
    background = make_background(int(rng.integers(1 << 30)), scene_wh)
    scene, _ = place_in_scene(
        cover, background, rng,
        scale_range=(0.6, 0.92), max_tilt=0.2 * strength, max_rotation_deg=25.0 * strength, margin=0.02,
    )  # fmt: skip
    on_scene = none.only(blur=0.6, noise=0.7, jpeg=0.9, lighting=0.4)
    return photo_augment(scene, rng, strength, on_scene)


def thumbnail(image: "np.ndarray", side: int = THUMB_SIDE) -> bytes:
    """A small JPEG for reports."""
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, side / max(h, w))
    if s < 1.0:
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""


# ---- one probe through the pipeline --------------------------------------------------
@dataclass
class Probe:
    """One query through the pipeline, with what is needed to re-decide it offline."""

    label: str
    truth: int | None  # reference row, None: not in the collection
    result: dict[str, Any]
    sims: "np.ndarray"  # cosine to every reference (max over crop / full variants)
    variants: "dict[str, list[GeomMatch]]"
    thumb: bytes = b""
    kind: str = "photo"  # "selftest" or "photo"
    cosines: "dict[str, dict[int, float]]" = field(default_factory=dict)  # per variant, as the pipeline saw them
    store: Any = None  # the IndexStore it was identified against (outlines for the rival rule)

    def cosine(self, variant: str, i: int) -> float:
        cos = self.cosines.get(variant)
        return cos.get(i, 0.0) if cos else float(self.sims[i])

    @property
    def match(self) -> int | None:
        ranked = self.variants.get(self.result.get("strategy") or "", [])
        return ranked[0].ref_index if ranked else None

    def geom(self, i: int) -> float:
        return max((m.score for r in self.variants.values() for m in r if m.ref_index == i), default=0.0)

    def best_wrong_geom(self) -> "tuple[int | None, float]":
        best: tuple[int | None, float] = (None, -1.0)
        for ranked in self.variants.values():
            for m in ranked:
                if m.ref_index != self.truth and m.score > best[1]:
                    best = (m.ref_index, m.score)
                    break  # ranked lists are sorted
        return best if best[0] is not None else (None, 0.0)

    def best_wrong_cos(self) -> "tuple[int | None, float]":
        import numpy as np

        sims = self.sims.copy()
        if self.truth is not None:
            sims[self.truth] = -np.inf
        if not len(sims) or not np.isfinite(sims).any():
            return None, 0.0
        j = int(np.argmax(sims))
        return j, float(sims[j])

    def emb_rank(self) -> int | None:
        """0-based rank of the true reference by embedding alone."""
        if self.truth is None:
            return None
        return int((self.sims > self.sims[self.truth]).sum())

    def top5(self) -> bool:
        if self.truth is None:
            return False
        ranked = self.variants.get(self.result.get("strategy") or "", [])
        return any(m.ref_index == self.truth for m in ranked[:5])

    def summary(self, store: "IndexStore") -> dict[str, Any]:
        """JSON-able facts about this probe."""
        wrong_i, wrong_g = self.best_wrong_geom()
        wcos_i, wcos = self.best_wrong_cos()
        out: dict[str, Any] = {
            "input": self.label,
            "truth": store.records[self.truth]["id"] if self.truth is not None else None,
            "decision": self.result.get("decision"),
            "match": store.records[self.match]["id"] if self.match is not None else None,
            "correct": self.truth is not None and self.match == self.truth,
            "top5": self.top5(),
            "geom_score": self.result.get("geom_score", 0.0),
            "best_wrong": store.records[wrong_i]["id"] if wrong_i is not None else None,
            "best_wrong_geom": round(wrong_g, 4),
            "best_wrong_cosine": round(wcos, 4),
        }
        if self.truth is not None:
            out.update(
                correct_geom=round(self.geom(self.truth), 4),
                correct_cosine=round(float(self.sims[self.truth]), 4),
                margin_geom=round(self.geom(self.truth) - wrong_g, 4),
                margin_cosine=round(float(self.sims[self.truth]) - wcos, 4),
                embedding_rank=self.emb_rank(),
            )
        return out


class Prober:
    """Runs :meth:`Identifier.identify` and keeps what it decided from.

    The per-view candidate lists come from ``identify``'s ``trace``, so they are
    exactly what the pipeline saw; :func:`redecide` replays the same decision.
    """

    def __init__(self, identifier: "Identifier") -> None:
        self.identifier = identifier

    def probe(self, source: Any, truth: int | None, label: str, kind: str = "photo", keep_thumb: bool = True) -> Probe:
        import numpy as np

        trace: dict[str, Any] = {}
        store = self.identifier.store
        result = self.identifier.identify(source, name=label, trace=trace)
        vectors, image = trace.get("vectors"), trace.get("image")
        if vectors is not None and len(store.embeddings):
            sims = (np.asarray(vectors, np.float32) @ store.embeddings.T).max(axis=0)
        else:
            sims = np.zeros(store.size, np.float32)
        variants: dict[str, list] = {}
        cosines: dict[str, dict[int, float]] = {}
        for name, (ranked, cos) in trace.get("variants", {}).items():
            variants[name] = list(ranked)
            cosines[name] = dict(cos)
        thumb = thumbnail(image) if keep_thumb and image is not None else b""
        return Probe(label, truth, result, sims, variants, thumb, kind, cosines, store)


# ---- offline re-decision (calibration) -----------------------------------------------
def redecide(probe: Probe, thresholds: "Thresholds", exclude: int | None = None) -> "tuple[str, int | None, float]":
    """(decision, reference row, score) the pipeline would give with ``thresholds``.

    ``exclude`` removes one reference from the candidates: with the true
    reference left out, a labelled photo becomes a photo of an item that is
    not in the collection.
    """
    from cover_id.pipeline import choose

    variants = {k: (v, probe.cosines.get(k) or {m.ref_index: float(probe.sims[m.ref_index]) for m in v})
                for k, v in probe.variants.items()}  # fmt: skip
    ordered, decision = choose(probe.store, variants, thresholds, exclude)
    ranked = ordered[0][1][0] if ordered else []
    if not ranked:
        return "reject", None, 0.0
    return decision, ranked[0].ref_index, ranked[0].score


def _rates(probes: list[Probe], th: "Thresholds") -> dict[str, Any]:
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


def calibrate(
    probes: list[Probe], base: "Thresholds", target_far: float = 0.0, current: "Thresholds | None" = None
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
    open_th = replace(base, **{k: 0.0 for k in ("accept_score", "review_score") if hasattr(base, k)})
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
    allowed = int(math.floor(target_far * n_trials))
    negatives.sort(reverse=True)
    worst = negatives[allowed] if allowed < len(negatives) else 0.0
    accept = worst + max(SAFETY_ABS, SAFETY_REL * worst)
    floor = 0.5 * float(getattr(type(base)(), "accept_score", 0.0) or 0.0)
    accept = min(1.0, max(accept, floor))
    review_floor = 0.5 * float(getattr(type(base)(), "review_score", 0.0) or 0.0)
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
        "before": _round(_rates(probes, current or base)),
        "after": _round(_rates(probes, chosen)),
        "warning": (
            f"only {len(probes)} photos: thresholds are rough; label more photos for a sharper calibration"
            if len(probes) < MIN_CALIBRATION_PHOTOS
            else None
        ),
    }


def store_calibration(store: "IndexStore", calibration: dict[str, Any], source: Path | None = None) -> None:
    """Write ``calibration`` into the index manifest (atomic save), where identify and serve read it."""
    from cover_id.rerankers.geometric import Thresholds

    names = {f.name for f in fields(Thresholds)}
    entry = {k: v for k, v in calibration.items() if k in names}
    entry.update(
        {k: calibration[k] for k in ("target_far", "n_photos", "n_in_collection", "n_absent", "date") if k in calibration}
    )
    entry["accepted_correct"] = calibration["after"]["accepted_correct"]
    entry["far"] = calibration["after"]["far"]
    if source is not None:
        entry["source"] = str(Path(source).resolve())
    store.manifest["calibration"] = entry
    store.save(store.path)


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


# ---- statistics ------------------------------------------------------------------------
def distribution(values: list[float]) -> dict[str, Any]:
    import numpy as np

    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64)
    q = np.percentile(a, [5, 10, 25, 50, 75, 90])
    return {
        "n": len(a), "min": float(a.min()), "p5": float(q[0]), "p10": float(q[1]), "p25": float(q[2]),
        "median": float(q[3]), "p75": float(q[4]), "p90": float(q[5]), "max": float(a.max()),
        "negative": float((a < 0).mean()),
    }  # fmt: skip


def margin_guidance(geom: dict[str, Any], cos: dict[str, Any], recall_at_k: float | None, encoder: str) -> dict[str, Any]:
    """Strong / medium / weak separation, with what to do about it."""
    if not geom.get("n"):
        return {"level": "unknown", "advice": ["no self-test probes: nothing to judge"]}
    med, p10 = geom["median"], geom["p10"]
    level = "strong" if med >= 0.35 and p10 >= 0.15 else "medium" if med >= 0.2 and p10 >= 0.0 else "weak"
    advice: list[str] = []
    if level == "strong":
        advice.append("references are well separated: photos of them should be accepted reliably")
    if level in ("medium", "weak"):
        advice.append(
            "some references are hard to tell apart from their neighbours: add sharper, tightly cropped "
            "reference images (the cover only, at least 600 px)"
        )
    if recall_at_k is not None and recall_at_k < 0.95:
        advice.append(
            f"the embedding alone ranks the right reference among its candidates only {recall_at_k:.0%} of the "
            "time (keypoint votes supply the rest of the candidates); if the self-test top-1 is low too, train "
            "a projection head (`cover-id train --index INDEX --out head.pt`, then "
            "`cover-id index ... --projection head.pt`)"
            + (" or try the 'local' engine, which is built for printed covers" if encoder != "local" else "")
        )
    elif cos.get("n") and cos["median"] < 0.05:
        advice.append("embedding margins are thin: a projection head (`cover-id train`) usually widens them")
    if level == "weak":
        advice.append(
            "geometric margins are weak: the collection may hold near-duplicates (editions of the same item); "
            "check the confusable pairs and merge or relabel them, and calibrate thresholds with real photos "
            "(`cover-id verify --queries truth.csv --calibrate`)"
        )
    return {"level": level, "advice": advice}


# ---- the measurements ------------------------------------------------------------------
def _reference_image(store: "IndexStore", i: int) -> "np.ndarray | None":
    from cover_id.errors import ImageError
    from cover_id.imageio import read_image

    try:
        return read_image(store.image_path(i), max_side=1024)
    except ImageError:
        return None


def self_test(
    prober: Prober, samples: int = 200, views: int = 1, seed: int = 0, strength: float = 1.0,
    show_progress: bool = False,
) -> list[Probe]:  # fmt: skip
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
            image = _reference_image(store, i)
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


def confusable_pairs(identifier: "Identifier", top: int = 10, neighbours: int = 5, checked: int = 100) -> dict[str, list]:
    """References nearest each other: by embedding cosine, and geometrically verified."""
    store = identifier.store
    if store.size < 2:
        return {"by_embedding": [], "by_geometry": []}
    hits = identifier.search(store.embeddings, min(store.size, neighbours + 1))
    pairs: dict[tuple[int, int], float] = {}
    for i, row in enumerate(hits):
        for j, s in row:
            if j != i:
                key = (min(i, j), max(i, j))
                pairs[key] = max(pairs.get(key, -1.0), s)
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
    named = lambda rs: [{**r, "a": _ref(store, r["a"]), "b": _ref(store, r["b"])} for r in rs]  # noqa: E731
    return {"by_embedding": named(rows[:top]), "by_geometry": named(by_geom)}


def read_truth(csv_path: Path, store: "IndexStore") -> list[tuple[Path, int | None, str]]:
    """(photo path, reference row or None, reference as written) for each CSV row."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CoverIdError(f"queries file not found: {csv_path}")
    base = csv_path.resolve().parent
    by_file = {r["filename"]: i for i, r in enumerate(store.records)}
    by_id = {r["id"]: i for i, r in enumerate(store.records)}
    by_path: dict[str, int] = {}
    by_base: dict[str, list[int]] = {}
    for i, r in enumerate(store.records):
        by_path[str(store.image_path(i).resolve())] = i
        by_base.setdefault(Path(r["filename"]).name, []).append(i)
    out: list[tuple[Path, int | None, str]] = []
    unknown: list[str] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "photo" not in cols or "reference" not in cols:
            raise CoverIdError(f"{csv_path}: needs a header with columns photo,reference (got {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            photo = (row.get(cols["photo"]) or "").strip()
            ref = (row.get(cols["reference"]) or "").strip()
            if not photo:
                continue
            p = Path(photo)
            p = p if p.is_absolute() else base / p
            if not ref:
                out.append((p, None, ""))
                continue
            rp = Path(ref)
            cands = [str((rp if rp.is_absolute() else base / rp).resolve())]
            i = by_path.get(cands[0])
            if i is None:
                i = by_file.get(ref.replace("\\", "/"), by_id.get(ref))
            if i is None and len(by_base.get(rp.name, [])) == 1:
                i = by_base[rp.name][0]
            if i is None:
                unknown.append(f"line {line}: {ref}")
            out.append((p, i, ref))
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise CoverIdError(
            f"{csv_path}: references not in the index: {'; '.join(unknown[:5])}{more} "
            "(give the filename relative to the refs folder or the id; leave it empty for 'not in the collection')"
        )
    if not out:
        raise CoverIdError(f"{csv_path}: no photos listed")
    return out


def label_photos(
    prober: Prober, truth: list[tuple[Path, int | None, str]], show_progress: bool = False
) -> tuple[list[Probe], list[dict[str, Any]]]:
    """Identify every labelled photo; unreadable ones are returned as errors."""
    from cover_id.progress import progress

    probes, errors = [], []
    with progress(len(truth), "labelled photos", show_progress) as advance:
        for path, i, _ in truth:
            try:
                probes.append(prober.probe(str(path), i, str(path), kind="photo"))
            except CoverIdError as exc:
                errors.append({"input": str(path), "error": str(exc)})
            advance()
    return probes, errors


# ---- the whole report --------------------------------------------------------------------
def _ref(store: "IndexStore", i: int | None) -> dict[str, Any] | None:
    if i is None:
        return None
    r = store.records[i]
    return {"id": r["id"], "name": r["name"], "filename": r["filename"]}


def summarize_probes(probes: list[Probe], store: "IndexStore", top_k: int) -> dict[str, Any]:
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
    return _round(out)


def failures(probes: list[Probe], store: "IndexStore") -> list[dict[str, Any]]:
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
            "accepted although not in the collection" if p.truth is None
            else "wrong reference accepted" if d == "accept"
            else "right reference, not confident" if p.match == p.truth
            else "wrong reference on top"
        )  # fmt: skip
        out.append({**s, "reason": reason, "truth_ref": _ref(store, p.truth), "best_wrong_ref": _ref(store, wrong_i)})
    return out


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
    keep_probes: bool = False,
) -> dict[str, Any]:
    """Every measurement of ``cover-id verify`` as one JSON-able dict.

    With ``keep_probes`` the :class:`Probe` objects and the store are returned
    under ``"_probes"`` and ``"_store"`` (for the HTML report; not JSON-able).
    ``samples`` < 0 skips the self-test.
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
    gd, cd = _round(distribution(geom_margins)), _round(distribution(cos_margins))
    report["margins"] = {
        "geometric": gd,
        "embedding": cd,
        "guidance": margin_guidance(gd, cd, st.get("embedding_recall_at_k") if selftest else None, store.encoder_spec.get("name", "")),
    }
    worst = sorted((p for p in selftest), key=lambda p: p.geom(p.truth) - p.best_wrong_geom()[1])
    report["self_test"]["worst"] = [
        {**p.summary(store), "truth_ref": _ref(store, p.truth), "best_wrong_ref": _ref(store, p.best_wrong_geom()[0])}
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
            "geometric": _round(distribution([p.geom(p.truth) - p.best_wrong_geom()[1] for p in photos if p.truth is not None])),
            "embedding": _round(distribution([float(p.sims[p.truth]) - p.best_wrong_cos()[1] for p in photos if p.truth is not None])),
        }
        report["photos"] = ph
        if do_calibrate:
            from cover_id.rerankers.geometric import Thresholds

            cal = calibrate(photos, Thresholds(), target_far, current=identifier.thresholds)
            store_calibration(store, cal, queries)
            report["calibration"] = cal
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if keep_probes:
        report["_probes"] = {"selftest": selftest, "photos": photos}
        report["_store"] = store
    return report


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

