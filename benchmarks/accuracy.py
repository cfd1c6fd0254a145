"""Identification accuracy on the real DVD photos, closed and open set.

Index: the 100 references + 258 distractor covers. Closed set: every photo's
cover is in the index. Open set: each photo is identified against the index
with its own reference removed; it must not be accepted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from common import dvd_index, truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="local")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos")
    ap.add_argument("--failures", action="store_true", help="print every failure")
    ap.add_argument("--json", dest="json_out", default=None, help="write per-photo results here")
    args = ap.parse_args()
    from cover_id.pipeline import Identifier

    ident = Identifier.from_index(dvd_index(args.encoder, args.rebuild), {"threads": 2})
    store = ident.store
    pairs = truth()[: args.limit or None]
    by_file = {r["filename"]: r["id"] for r in store.records}
    closed, opened, rows = Counter(), Counter(), []
    t0 = time.perf_counter()
    for photo, ref in pairs:
        true_id = by_file[ref]
        r = ident.identify(photo)
        got = r["match"]["id"] if r["match"] else None
        correct = got == true_id
        closed["top1"] += correct
        closed["accepted_correct"] += correct and r["decision"] == "accept"
        closed["false_accept"] += (not correct) and r["decision"] == "accept"
        closed[r["decision"]] += 1
        ident.store = store.copy()
        ident.store.remove(true_id)
        o = ident.identify(photo)
        ident.store = store
        opened[o["decision"]] += 1
        rows.append({"photo": photo.name, "truth": true_id, "closed": _brief(r), "open": _brief(o)})
        if args.failures and (not correct or r["decision"] != "accept" or o["decision"] == "accept"):
            print(f"  {photo.name}: truth {true_id} | closed {_brief(r)} | open {_brief(o)}")
    n = len(pairs)
    secs = time.perf_counter() - t0
    print(f"encoder {args.encoder}, {store.size} references, {n} photos ({secs:.0f}s)")
    print(f"closed set: top-1 {closed['top1'] / n:.1%}, accepted-and-correct {closed['accepted_correct'] / n:.1%}, "
          f"false accepts {closed['false_accept']} ({closed['false_accept'] / n:.1%}); "
          f"decisions accept {closed['accept']}, review {closed['review']}, reject {closed['reject']}")
    print(f"open set (true reference removed): not accepted {(n - opened['accept']) / n:.1%} "
          f"(reject {opened['reject']}, review {opened['review']}, accept {opened['accept']})")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)


def _brief(r: dict) -> dict:
    m = r.get("match") or {}
    return {"decision": r["decision"], "id": m.get("id"), "geom": r["geom_score"], "inl": r["inliers"],
            "cos": r["cosine"], "via": r["strategy"]}  # fmt: skip


if __name__ == "__main__":
    main()
