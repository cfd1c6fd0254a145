"""Corrections that teach, measured: does a confirmed photo, added as an extra view, help other photos?

On the dev paintings and books (``../shared/data``): every test photo is
identified (closed set) and, with its item left out of the collection (every
view of it), identified again (open set: it must not be accepted). Then, for
each item that has a photo, one *confirmed photo* is taught through the
feedback code path (rectified through the homography that verifies it, or its
detected outline, by :func:`cover_id.teach.rectify_for`, and added by
:meth:`cover_id.server.collection.Collection.add_view`, the write path of
``POST /api/refs``), and both runs are repeated on the taught index.

The dev sets hold one real photo per item, so a true leave-one-out (teach with
one real photo, test on another) is not possible. Two stand-ins, both printed:

- ``reference``: taught with a synthetic phone photo of the reference
  (:func:`cover_id.evaluate.synth.photo_augment`: perspective, blur, noise,
  JPEG, lighting, glare, occlusion on a cluttered background); tested on the
  real photos, which the teaching never saw.
- ``reshoot``: taught with the real photo (what a user confirms); tested on a
  synthetic second shot of the same scene (another viewpoint, framing, focus,
  noise and exposure of the real photo): the same item under the same lights
  again, as at a record fair or in a museum.

The index is a copy; the benchmark cache is left as it was.

    python benchmarks/teach.py [--sets paintings books] [--modes reference reshoot] [--items N] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import set_index, set_truth

WHAT = {
    "reference": "a synthetic photo of the reference → the real photos",
    "reshoot": "the real photo → a synthetic second shot of its scene",
}


def run(ident: Any, pairs: list[tuple[Any, str]]) -> tuple[Counter, Counter]:
    """Closed and open set outcomes over ``pairs`` (photo path or BGR array, true item id) on ``ident``'s store."""
    closed: Counter = Counter()
    opened: Counter = Counter()
    base = ident.store
    for photo, item in pairs:
        r = ident.identify(photo)
        got = (r.get("match") or {}).get("id")
        closed[r["decision"] + ("_correct" if got == item else "_wrong")] += 1
        snap = base.copy()  # the item left out (every view of it), not saved: a snapshot of its own
        for row in reversed(base.views_of(item)):
            snap.remove(base.records[row]["id"])
        ident.store = snap
        try:
            o = ident.identify(photo)
        finally:
            ident.store = base
        opened["accepted" if o["decision"] == "accept" else "not_accepted"] += 1
    return closed, opened


def teach(ident: Any, coll: Any, lessons: list[tuple[str, Any]]) -> Counter:
    """Each (item, confirmed photo) taught like ``POST /api/feedback`` does; how each went."""
    from cover_id.teach import rectify_for

    how: Counter = Counter()
    for item, photo in lessons:
        store = ident.store
        found, why = rectify_for(ident, store, photo, store.index_of(item))
        if found is None:
            how["not taught: " + why.split(" (")[0]] += 1
            continue
        coll.add_view(item, found.image, "feedback", view_how=found.how)
        how[found.how] += 1
    return how


def synthetic_photo(path: Path, seed: int, reshoot: bool) -> Any:
    """A synthetic phone photo of the image at ``path``: of a reference, or another shot of a real photo's scene."""
    import numpy as np

    from cover_id.evaluate.synth import AugmentOptions, photo_augment
    from cover_id.imageio import read_image

    if not reshoot:
        return photo_augment(read_image(path, max_side=1024), np.random.default_rng(seed))
    # the same scene again: another viewpoint (perspective, rotation, framing), focus, noise and exposure
    opts = AugmentOptions.none().only(
        perspective=1.0, rotation_deg=8.0, crop=1.0, blur=0.5, noise=0.8, jpeg=1.0, lighting=0.8
    )
    return photo_augment(read_image(path, max_side=1600), np.random.default_rng(seed), 0.6, opts)


def one_set(name: str, mode: str, n_items: int, threads: int, seed: int) -> dict[str, Any]:
    from cover_id.pipeline import Identifier
    from cover_id.server.collection import Collection

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "idx"
        shutil.copytree(set_index(name), index)
        ident = Identifier.from_index(index, {"threads": threads})
        store = ident.store
        by_file = {r["filename"]: r["id"] for r in store.records}
        truth = [(photo, by_file[ref]) for photo, ref in set_truth(name)]
        items = sorted({item for _, item in truth})[: n_items or None]
        taught = set(items)
        if mode == "reference":  # taught: a synthetic photo of the reference; tested: the real photos
            lessons = [
                (item, synthetic_photo(store.image_path(store.index_of(item)), seed + k, False))
                for k, item in enumerate(items)
            ]
            pairs: list[tuple[Any, str]] = list(truth)
        else:  # taught: the real photo; tested: another (synthetic) shot of the same scene
            lessons = [(item, photo) for photo, item in truth if item in taught]
            pairs = [(synthetic_photo(photo, seed + k, True), item) for k, (photo, item) in enumerate(truth)]
        t0 = time.perf_counter()
        before = [
            run(ident, [p for p in pairs if p[1] in taught]),
            run(ident, [p for p in pairs if p[1] not in taught]),
        ]
        coll = Collection(ident, index)
        how = teach(ident, coll, lessons)
        after = [run(ident, [p for p in pairs if p[1] in taught]), run(ident, [p for p in pairs if p[1] not in taught])]
        return {
            "set": name,
            "mode": mode,
            "photos": len(pairs),
            "items": len(items),
            "how": how,
            "before": before,
            "after": after,
            "seconds": round(time.perf_counter() - t0, 1),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["paintings", "books"])
    ap.add_argument("--items", type=int, default=0, help="teach this many items (0: every item with a photo)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--modes", nargs="+", default=["reference", "reshoot"], choices=["reference", "reshoot"])
    args = ap.parse_args()
    rows = [one_set(s, m, args.items, args.threads, args.seed) for m in args.modes for s in args.sets]
    print(
        "| set | taught with → tested on | photos | items taught (how) | photos of taught items: accepted-correct before → after | "
        "false accepts, closed, before → after | open set accepted (item left out) before → after | other photos: "
        "accepted-correct before → after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        (tc_b, to_b), (oc_b, oo_b) = r["before"]
        (tc_a, to_a), (oc_a, oo_a) = r["after"]
        n_t = sum(tc_b.values())
        fa_b = sum(c[k] for c in (tc_b, oc_b) for k in c if k == "accept_wrong")
        fa_a = sum(c[k] for c in (tc_a, oc_a) for k in c if k == "accept_wrong")
        open_b = to_b["accepted"] + oo_b["accepted"]
        open_a = to_a["accepted"] + oo_a["accepted"]
        how = ", ".join(f"{k} {v}" for k, v in sorted(r["how"].items()))
        print(
            f"| {r['set']} | {WHAT[r['mode']]} | {r['photos']} | {r['items']} ({how}) | {tc_b['accept_correct']}/{n_t} → "
            f"{tc_a['accept_correct']}/{n_t} | {fa_b} → {fa_a} | {open_b} → {open_a} of {r['photos']} | "
            f"{oc_b['accept_correct']} → {oc_a['accept_correct']} of {sum(oc_b.values())} |"
        )
    for r in rows:
        (tc_b, _), _ = r["before"]
        (tc_a, _), _ = r["after"]
        print(f"{r['set']} ({r['mode']}): taught photos before {dict(tc_b)}, after {dict(tc_a)} ({r['seconds']} s)")


if __name__ == "__main__":
    main()
