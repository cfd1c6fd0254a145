"""Warm per-photo identify latency on the DVD photos, with a per-stage breakdown.

Thread counts are set explicitly (default 2, the target laptop/CI size).
"""

from __future__ import annotations

import argparse
import time

from common import dvd_index, percentile, truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="local")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    from cover_id.pipeline import Identifier

    ident = Identifier.from_index(dvd_index(args.encoder), {"threads": args.threads})
    photos = [p for p, _ in truth()][: args.limit or None]
    for p in photos[:3]:  # warm-up: caches, lazy imports, allocator
        ident.identify(p)
    walls, stages = [], {}
    for p in photos:
        t = time.perf_counter()
        r = ident.identify(p)
        walls.append((time.perf_counter() - t) * 1000)
        for k, v in r["timings_ms"].items():
            stages.setdefault(k, []).append(v)
    print(f"{len(photos)} photos, {ident.store.size} references, encoder {args.encoder}, {args.threads} threads")
    print(f"latency p50 {percentile(walls, 50):.0f} ms, p95 {percentile(walls, 95):.0f} ms, max {max(walls):.0f} ms")
    print("stage medians: " + ", ".join(f"{k} {percentile(v, 50):.1f} ms" for k, v in stages.items() if k != "total"))


if __name__ == "__main__":
    main()
