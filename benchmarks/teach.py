"""Corrections that teach, measured: does a confirmed photo, added as an extra view, help other photos?

On the dev paintings and books (``../shared/data``): every photo is identified
(closed set) and, with its item left out of the collection, identified again
(open set: it must not be accepted). Then, for each item that has a photo, one
*confirmed photo* is taught through the feedback code path (the photo is
rectified through the homography that verifies it, or its detected outline, by
:func:`cover_id.teach.rectify_for`, and added by
:meth:`cover_id.server.collection.Collection.add_view`, the write path of
``POST /api/refs``), and both runs are repeated on the taught index.

The dev sets hold one real photo per item, so a real leave-one-out (teach with
one photo, test on another) is not possible: the confirmed photo is a
*synthetic* phone photo of the reference (:func:`cover_id.evaluate.synth.photo_augment`:
perspective, blur, noise, JPEG, lighting, glare, occlusion on a cluttered
background), and the photos tested are the real ones, which the teaching never
saw. The index is a copy; the benchmark cache is left as it was.

    python benchmarks/teach.py [--sets paintings books] [--items N] [--threads 2]
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


def run(ident: Any, pairs: list[tuple[Path, str]]) -> tuple[Counter, Counter]:
    """Closed and open set outcomes over ``pairs`` (photo, true item id) on ``ident``'s current store."""
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


def teach(ident: Any, coll: Any, items: list[str], seed: int) -> Counter:
    """One synthetic confirmed photo per item, taught like ``POST /api/feedback`` does."""
    import numpy as np

    from cover_id.evaluate.synth import photo_augment
    from cover_id.imageio import read_image
    from cover_id.teach import rectify_for

    how: Counter = Counter()
    for k, item in enumerate(items):
        store = ident.store
        row = store.index_of(item)
        image = read_image(store.image_path(row), max_side=1024)
        photo = photo_augment(image, np.random.default_rng(seed + k))
        found, why = rectify_for(ident, store, photo, row)
        if found is None:
            how["not taught: " + why.split(" (")[0]] += 1
            continue
        coll.add_view(item, found.image, "feedback", view_how=found.how)
        how[found.how] += 1
    return how


def one_set(name: str, n_items: int, threads: int, seed: int) -> dict[str, Any]:
    from cover_id.pipeline import Identifier
    from cover_id.server.collection import Collection

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "idx"
        shutil.copytree(set_index(name), index)
        ident = Identifier.from_index(index, {"threads": threads})
        by_file = {r["filename"]: r["id"] for r in ident.store.records}
        pairs = [(photo, by_file[ref]) for photo, ref in set_truth(name)]
        items = sorted({item for _, item in pairs})[: n_items or None]
        taught = set(items)
        t0 = time.perf_counter()
        before = [
            run(ident, [p for p in pairs if p[1] in taught]),
            run(ident, [p for p in pairs if p[1] not in taught]),
        ]
        coll = Collection(ident, index)
        how = teach(ident, coll, items, seed)
        after = [run(ident, [p for p in pairs if p[1] in taught]), run(ident, [p for p in pairs if p[1] not in taught])]
        return {
            "set": name,
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
    args = ap.parse_args()
    rows = [one_set(s, args.items, args.threads, args.seed) for s in args.sets]
    print(
        "| set | photos | items taught (how) | photos of taught items: accepted-correct before → after | "
        "false accepts, closed, before → after | open set accepted (item left out) before → after | other photos: "
        "accepted-correct before → after |"
    )
    print("|---|---|---|---|---|---|---|")
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
            f"| {r['set']} | {r['photos']} | {r['items']} ({how}) | {tc_b['accept_correct']}/{n_t} → "
            f"{tc_a['accept_correct']}/{n_t} | {fa_b} → {fa_a} | {open_b} → {open_a} of {r['photos']} | "
            f"{oc_b['accept_correct']} → {oc_a['accept_correct']} of {sum(oc_b.values())} |"
        )
    for r in rows:
        (tc_b, _), _ = r["before"]
        (tc_a, _), _ = r["after"]
        print(f"{r['set']}: taught photos before {dict(tc_b)}, after {dict(tc_a)} ({r['seconds']} s)")


if __name__ == "__main__":
    main()
