"""Does the accept/review decision hold beyond the photos it was tuned on?

Queries (none of them the 100 tuning photos as taken):

* synthetic phone photos (``evaluate.photos.photo_view``) of covers sampled from all
  358 references + distractors, at two strengths;
* real photos degraded: downscaled to 640 px, JPEG quality 10, Gaussian blur,
  darkened and noisy, a third of the frame cut away.

Every query is identified twice: closed set (its cover in the index) and open
set (its cover removed, so it must not be accepted). Open-set accepts are
listed with the geometric score of the two references against each other: a
high one means the collection holds another edition with the same artwork.
Runs a few minutes on one core with the defaults.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
from common import dvd_index, percentile, truth

FEATURES = ("score", "inliers", "cells", "inlier_ratio", "explained")


DEGRADATIONS = ("down640", "jpeg10", "blur", "dark", "cutoff")  # the kinds :func:`degrade` knows


def degrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A real photo as a worse camera or a careless user would have taken it."""
    h, w = image.shape[:2]
    if kind == "cutoff":  # a third of the frame, and so part of the cover, cut away
        side, f = int(rng.integers(4)), 0.33
        return [image[:, int(w * f) :], image[:, : int(w * (1 - f))], image[int(h * f) :], image[: int(h * (1 - f))]][
            side
        ]
    s = (640 if kind == "down640" else 800) / max(h, w)
    image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    if kind == "down640":
        return image
    if kind == "jpeg10":
        return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 10])[1], cv2.IMREAD_COLOR)
    if kind == "blur":
        return cv2.GaussianBlur(image, (0, 0), 2.2)
    if kind == "dark":
        dark = 255 * (image.astype(np.float32) / 255) ** 1.8 * 0.6 + rng.normal(0, 6, image.shape)
        return np.clip(dark, 0, 255).astype(np.uint8)
    raise ValueError(kind)


def best_of(trace: dict) -> "object | None":
    """The match the decision was made on (the strongest view's best candidate)."""
    best = None
    for ranked, _ in trace.get("variants", {}).values():
        if ranked and (best is None or (ranked[0].score, ranked[0].inliers) > (best.score, best.inliers)):
            best = ranked[0]
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=int, default=40, help="covers photographed synthetically at strength 1.0")
    ap.add_argument("--hard", type=int, default=20, help="covers photographed synthetically at strength 1.6")
    ap.add_argument("--photos", type=int, default=12, help="real photos, each degraded in every way")
    ap.add_argument("--kinds", default=",".join(DEGRADATIONS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from cover_id.evaluate.photos import photo_view, reference_image
    from cover_id.pipeline import Identifier
    from cover_id.rerankers.geometric import GeometricReranker

    ident = Identifier.from_index(dvd_index("local"), {"threads": args.threads})
    store = ident.store
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="decision_stress_"))
    queries: list[tuple[str, Path, int]] = []  # (kind, image file, true reference row)
    n_pick = min(args.synth + args.hard, store.size)
    for k, i in enumerate(rng.choice(store.size, size=n_pick, replace=False)):
        strength = 1.0 if k < args.synth else 1.6
        ref = reference_image(store, int(i))
        if ref is None:
            continue
        path = tmp / f"synth_{k}.jpg"
        cv2.imwrite(str(path), photo_view(ref, rng, strength), [cv2.IMWRITE_JPEG_QUALITY, 92])
        queries.append((f"synth{strength}", path, int(i)))
    by_file = {r["filename"]: j for j, r in enumerate(store.records)}
    pairs = truth()
    for pi in rng.choice(len(pairs), size=min(args.photos, len(pairs)), replace=False):
        photo, ref_name = pairs[pi]
        image = cv2.imread(str(photo))
        for kind in args.kinds.split(","):
            path = tmp / f"{kind}_{photo.stem}.jpg"
            cv2.imwrite(str(path), degrade(image, kind, rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
            queries.append((kind, path, by_file[ref_name]))

    counts: dict[str, Counter] = defaultdict(Counter)
    correct: dict[str, list[float]] = defaultdict(list)
    wrong: dict[str, list[float]] = defaultdict(list)
    open_accepts = []
    t0 = time.perf_counter()
    for kind, path, ti in queries:
        c = counts[kind]
        c["n"] += 1
        trace: dict = {}
        r = ident.identify(path, trace=trace)
        ok = r["match"] is not None and r["match"]["id"] == store.records[ti]["id"]
        c["top1"] += ok
        c["accepted_correct"] += ok and r["decision"] == "accept"
        c["false_accept_closed"] += (not ok) and r["decision"] == "accept"
        best = best_of(trace)
        if ok and best is not None:
            for f in FEATURES:
                correct[f].append(best.detail.get(f, 0.0) if f == "explained" else getattr(best, f))
        ident.store = store.copy()
        ident.store.remove(store.records[ti]["id"])
        trace = {}
        o = ident.identify(path, trace=trace)
        ident.store = store
        best = best_of(trace)
        if best is not None and best.sane:
            for f in FEATURES:
                wrong[f].append(best.detail.get(f, 0.0) if f == "explained" else getattr(best, f))
        if o["decision"] == "accept":
            c["open_accepted"] += 1
            open_accepts.append((kind, ti, o, best))

    n_all = sum(c["n"] for c in counts.values())
    print(f"{n_all} queries x (closed + open) against {store.size} references ({time.perf_counter() - t0:.0f}s)")
    total: Counter = Counter()
    for kind, c in sorted(counts.items()) + [("ALL", total)]:
        if kind != "ALL":
            total.update(c)
        n = max(1, c["n"])
        print(
            f"  {kind:9s} n={c['n']:4d}  closed: top-1 {c['top1'] / n:6.1%}, accepted-and-correct "
            f"{c['accepted_correct'] / n:6.1%}, false accepts {c['false_accept_closed']}  |  open: not accepted "
            f"{1 - c['open_accepted'] / n:6.1%} ({c['open_accepted']} accepted)"
        )
    print("distributions (p1 / p5 / p50 / p95 / p99): correct best match vs best wrong match (open set, sane only)")
    for f in FEATURES:
        for name, vals in (("correct", correct[f]), ("best-wrong", wrong[f])):
            qs = " / ".join(f"{percentile(vals, q):7.3f}" for q in (1, 5, 50, 95, 99))
            print(f"  {f:12s} {name:10s} {qs}   (n={len(vals)})")
    geom = GeometricReranker()
    for kind, ti, o, best in open_accepts:
        j = store.index_of(o["match"]["id"])
        twin = geom.match(store.features[ti], store.features[j]) if j is not None else None
        print(
            f"  open-set accept [{kind}] {store.records[ti]['filename']} -> {o['match']['filename']}: score "
            f"{o['geom_score']:.2f}, inliers {o['inliers']}, cells {best.cells if best else '?'}, explained "
            f"{best.detail.get('explained', 0) if best else 0:.2f}; reference vs reference score "
            f"{twin.score if twin else 0:.2f} ({'same artwork' if twin and twin.score >= 0.3 else 'different'})"
        )


if __name__ == "__main__":
    main()
