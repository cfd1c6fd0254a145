"""Warm per-photo identify latency on each dev set, next to a classical baseline run on the same photos.

For every photo, in the same process and under the same thread budget:

- ours: ``Identifier.identify`` (wall time, CPU time of every thread, per-stage medians from ``timings_ms``,
  the decision);
- the baseline, the classical approach: decode at the same size, RootSIFT, exhaustive nearest-neighbour
  matching against EVERY reference with Lowe's ratio test, references ranked by good-match count,
  RANSAC homography (OpenCV) on the best 10, the most inliers wins; accepted when inliers >= a fixed count.

The two alternate photo by photo, so background load hits both alike; the speed ratio (baseline p50 /
ours p50) and the accuracy of both are what compare across machines, not the absolute milliseconds.

``--tenmp N`` adds a row for 10-megapixel phone photos: the first N DVD photos upscaled to 3648 x 2736
(JPEG quality 92, made once into ``.cache/bench/tenmp``; the references are untouched), identified against
the DVD index like the others. The decode step then shows what reading a large JPEG at reduced size costs.

``--split-ab`` instead compares identify with the photo's RootSIFT split across two threads (the default) and
in one piece (``COVER_ID_SPLIT_FEATURES=0``), on the same photos in one process, the order alternating photo by
photo: p50 / p95 of each, the median of the per-photo ratios, the features stage, and whether the answers agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common import CACHE, SETS, percentile, set_index, set_truth

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from cover_id.features import Features

READ_SIDE = 800  # the baseline decodes photos like identify does
RATIO = 0.8  # Lowe's ratio on descriptor distances
SHORTLIST = 10  # references verified with RANSAC
RANSAC_PX = 5.0  # reprojection threshold in query pixels (at READ_SIDE)
WARMUP = 3
TENMP_SIZE = (3648, 2736)  # 10 MP, 4:3 like the DVD photos
TENMP_QUALITY = 92


@dataclass
class Baseline:
    """Every reference's RootSIFT keypoints, ready for exhaustive matching."""

    ids: list[str]
    xy: list[np.ndarray]
    desc: np.ndarray  # (references, most keypoints, 128) float32 unit rows, zero-padded

    @classmethod
    def from_store(cls, store: Any) -> Baseline:
        import numpy as np

        from cover_id.features import desc_float

        feats = list(store.features)
        desc = np.zeros((len(feats), max(len(f) for f in feats), 128), np.float32)
        for i, f in enumerate(feats):
            desc[i, : len(f)] = desc_float(f.desc)
        return cls([r["id"] for r in store.records], [f.xy for f in feats], desc)

    def identify(self, photo: Path) -> tuple[str | None, int]:
        """(best reference id or None, its inlier count)."""
        return self.best(*self.match(photo))

    def match(self, photo: Path) -> tuple[Features, list[tuple[np.ndarray, np.ndarray]]]:
        """The photo's keypoints and its ratio-test matches with every reference."""
        from cover_id.features import desc_float, extract_features
        from cover_id.imageio import read_image

        query = extract_features(read_image(photo, max_side=READ_SIDE))
        return query, _ratio_matches(desc_float(query.desc), self.desc)

    def best(self, query: Features, good: list, without: str | None = None) -> tuple[str | None, int]:
        """RANSAC on the references with the most good matches (``without``: as if that one were not indexed)."""
        ranked = sorted((i for i in range(len(good)) if self.ids[i] != without), key=lambda i: -len(good[i][0]))
        best, best_inliers = None, 0
        for i in ranked[:SHORTLIST]:
            n = _ransac_inliers(query, self.xy[i], *good[i])
            if n > best_inliers:
                best, best_inliers = self.ids[i], n
        return best, best_inliers


def _ratio_matches(q: np.ndarray, refs: np.ndarray, chunk: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per reference: query keypoints whose nearest neighbour passes the ratio test, (query_idx, ref_idx).

    Brute force, one reference at a time in effect; ``chunk`` references share one matrix product for speed.
    Zero padding rows have cosine 0 (RootSIFT is non-negative): never closer than a real neighbour.
    """
    import numpy as np

    out = []
    n, k, _ = refs.shape
    rows = np.arange(len(q))[:, None]
    for c in range(0, n, chunk):
        block = refs[c : c + chunk]
        sim = (q @ block.reshape(-1, 128).T).reshape(len(q), len(block), k)  # squared distance = 2 - 2 cos
        j = sim.argmax(axis=2)
        cols = np.arange(len(block))[None, :]
        s1 = sim[rows, cols, j]
        sim[rows, cols, j] = -np.inf
        s2 = sim.max(axis=2)
        ok = (2.0 - 2.0 * s1).clip(0) < RATIO * RATIO * (2.0 - 2.0 * s2)
        for b in range(len(block)):
            keep = np.flatnonzero(ok[:, b])
            out.append((keep, j[keep, b]))
    return out


def _ransac_inliers(query: Features, ref_xy: np.ndarray, qi: np.ndarray, ri: np.ndarray) -> int:
    import cv2
    import numpy as np

    if len(qi) < 4:
        return 0
    h, mask = cv2.findHomography(ref_xy[ri], query.xy[qi], cv2.RANSAC, RANSAC_PX, maxIters=2000, confidence=0.999)
    return 0 if h is None else int(np.count_nonzero(mask))


def tenmp_photos(count: int) -> list[tuple[Path, str]]:
    """The first ``count`` DVD photos upscaled to 10 MP (made once, atomically), with their truth."""
    import cv2

    out = CACHE / "tenmp"
    out.mkdir(parents=True, exist_ok=True)
    pairs = []
    for photo, ref in set_truth("dvd-covers")[:count]:
        big = out / photo.name
        if not big.is_file():
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            ok, buf = cv2.imencode(
                ".jpg",
                cv2.resize(image, TENMP_SIZE, interpolation=cv2.INTER_CUBIC),
                [cv2.IMWRITE_JPEG_QUALITY, TENMP_QUALITY],
            )
            if not ok:
                raise SystemExit(f"cannot encode a 10 MP copy of {photo}")
            tmp = big.with_suffix(".tmp")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, big)
        pairs.append((big, ref))
    return pairs


def run_set(
    name: str, encoder: str, threads: int, limit: int, min_inliers: int, photos: list | None = None
) -> dict[str, Any]:
    """Ours and the baseline on one set's photos (or on ``photos`` of it), alternating photo by photo."""
    from cover_id.pipeline import Identifier

    ident = Identifier.from_index(set_index(name, encoder), {"threads": threads})
    store = ident.store
    base = Baseline.from_store(store)
    by_file = {r["filename"]: r["id"] for r in store.records}
    pairs = (photos if photos is not None else set_truth(name))[: limit or None]
    for photo, _ in pairs[:WARMUP]:  # caches, lazy imports, allocator
        ident.identify(photo)
        base.identify(photo)
    ours, theirs, ours_cpu, base_cpu, stages = [], [], [], [], {}
    acc = dict.fromkeys(("ours_ok", "ours_fa", "base_top1", "base_ok", "base_fa", "ours_open", "base_open"), 0)
    for photo, ref in pairs:
        truth = by_file[ref]
        c, t = cpu_seconds(), time.perf_counter()
        r = ident.identify(photo)
        ours.append((time.perf_counter() - t) * 1000)
        ours_cpu.append((cpu_seconds() - c) * 1000)
        for k, v in r["timings_ms"].items():
            stages.setdefault(k, []).append(v)
        correct = (r["match"] or {}).get("id") == truth
        acc["ours_ok"] += correct and r["decision"] == "accept"
        acc["ours_fa"] += (not correct) and r["decision"] == "accept"
        c, t = cpu_seconds(), time.perf_counter()
        query, good = base.match(photo)
        got, inliers = base.best(query, good)
        theirs.append((time.perf_counter() - t) * 1000)
        base_cpu.append((cpu_seconds() - c) * 1000)
        accepted = inliers >= min_inliers
        acc["base_top1"] += got == truth
        acc["base_ok"] += got == truth and accepted
        acc["base_fa"] += got != truth and accepted
        # Open set, untimed: the photo's own reference is not indexed; any accept is a false accept.
        acc["base_open"] += base.best(query, good, without=truth)[1] >= min_inliers
        ident.store = store.copy()
        ident.store.remove(truth)
        acc["ours_open"] += ident.identify(photo)["decision"] == "accept"
        ident.store = store
    return {
        "refs": store.size,
        "photos": len(pairs),
        "ours": ours,
        "base": theirs,
        "ours_cpu": ours_cpu,
        "base_cpu": base_cpu,
        "stages": stages,
        **acc,
    }


def split_ab(name: str, encoder: str, threads: int, limit: int, photos: list | None = None) -> dict[str, Any]:
    """Identify each photo with the split RootSIFT and without it, alternating which goes first."""
    from cover_id.pipeline import Identifier

    ident = Identifier.from_index(set_index(name, encoder), {"threads": threads})
    pairs = (photos if photos is not None else set_truth(name))[: limit or None]
    runs: dict[str, dict[str, list[float]]] = {m: {"total": [], "features": [], "cpu": []} for m in ("1", "0")}
    answers: dict[str, list[tuple[Any, str]]] = {"1": [], "0": []}
    warm = pairs[:WARMUP]
    for i, (photo, _) in enumerate(warm + pairs):
        for mode in ("1", "0") if i % 2 else ("0", "1"):
            os.environ["COVER_ID_SPLIT_FEATURES"] = mode
            c, t = cpu_seconds(), time.perf_counter()
            r = ident.identify(photo)
            if i < len(warm):
                continue
            runs[mode]["total"].append((time.perf_counter() - t) * 1000)
            runs[mode]["cpu"].append((cpu_seconds() - c) * 1000)
            runs[mode]["features"].append(r["timings_ms"]["features"])
            answers[mode].append(((r["match"] or {}).get("id"), r["decision"]))
    os.environ.pop("COVER_ID_SPLIT_FEATURES", None)
    ratios = [a / b for a, b in zip(runs["1"]["total"], runs["0"]["total"])]
    same = sum(a == b for a, b in zip(answers["1"], answers["0"]))
    return {"photos": len(pairs), "runs": runs, "ratio": percentile(ratios, 50), "same": same}


def print_split_ab(rows: dict[str, dict[str, Any]]) -> None:
    print(
        "\n| set | photos | split p50 / p95 ms | one piece p50 / p95 ms | split / one piece (median of per-photo "
        "ratios) | features stage p50, split / one piece | CPU ms p50, split / one piece | same answer |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        a, b = s["runs"]["1"], s["runs"]["0"]
        print(
            f"| {name} | {s['photos']} | {percentile(a['total'], 50):.0f} / {percentile(a['total'], 95):.0f} "
            f"| {percentile(b['total'], 50):.0f} / {percentile(b['total'], 95):.0f} | {s['ratio']:.3f} "
            f"| {percentile(a['features'], 50):.0f} / {percentile(b['features'], 50):.0f} "
            f"| {percentile(a['cpu'], 50):.0f} / {percentile(b['cpu'], 50):.0f} | {s['same']}/{s['photos']} |"
        )


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread (user + system): far less sensitive to other load than wall time."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {threads} threads, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--encoder", default="local")
    ap.add_argument("--threads", type=int, default=2, help="for torch, OpenCV, FAISS and BLAS alike")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos of each set")
    ap.add_argument("--min-inliers", type=int, default=12, help="the baseline accepts at this many RANSAC inliers")
    ap.add_argument(
        "--tenmp", type=int, default=20, metavar="N", help="also the first N DVD photos upscaled to 10 MP (0: not)"
    )
    ap.add_argument(
        "--split-ab", action="store_true", help="only compare RootSIFT split across two threads with one piece"
    )
    args = ap.parse_args()
    from cover_id.runtime import set_threads  # before numpy is loaded: BLAS reads its thread count once

    set_threads(args.threads)
    t0 = time.perf_counter()
    if args.split_ab:
        ab = {name: split_ab(name, args.encoder, args.threads, args.limit) for name in args.sets}
        if args.tenmp:
            ab["dvd-covers 10 MP"] = split_ab("dvd-covers", args.encoder, args.threads, 0, tenmp_photos(args.tenmp))
        print(f"machine: {machine(args.threads)}; encoder {args.encoder}; {time.perf_counter() - t0:.0f} s in all")
        print(f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
        print_split_ab(ab)
        return
    rows = {name: run_set(name, args.encoder, args.threads, args.limit, args.min_inliers) for name in args.sets}
    if args.tenmp:
        photos = tenmp_photos(args.tenmp)
        rows["dvd-covers 10 MP"] = run_set("dvd-covers", args.encoder, args.threads, 0, args.min_inliers, photos)
    print(f"machine: {machine(args.threads)}; encoder {args.encoder}; {time.perf_counter() - t0:.0f} s in all")
    print(
        f"baseline: RootSIFT (read at {READ_SIDE} px), exhaustive ratio-{RATIO} matching against every reference, "
        f"RANSAC ({RANSAC_PX:g} px) on the best {SHORTLIST} by good matches, most inliers wins, "
        f"accepted at >= {args.min_inliers} inliers"
    )
    print(f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
    print(
        "\n| set | refs | photos | ours p50 / p95 / max ms | baseline p50 / p95 ms | speed × baseline "
        "| CPU ms per photo, ours / baseline (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        o, b = s["ours"], s["base"]
        print(
            f"| {name} | {s['refs']} | {s['photos']} | {percentile(o, 50):.0f} / {percentile(o, 95):.0f} / {max(o):.0f} "
            f"| {percentile(b, 50):.0f} / {percentile(b, 95):.0f} | {percentile(b, 50) / percentile(o, 50):.1f}× "
            f"| {percentile(s['ours_cpu'], 50):.0f} / {percentile(s['base_cpu'], 50):.0f} |"
        )
    print(
        "\n| set | ours accepted-correct | ours false accepts | baseline top-1 | baseline accepted-correct "
        "| baseline wrong accepts | open set accepted: ours | open set accepted: baseline |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        n = s["photos"]
        print(
            f"| {name} | {s['ours_ok'] / n:.1%} | {s['ours_fa']} | {s['base_top1'] / n:.1%} | {s['base_ok'] / n:.1%} "
            f"| {s['base_fa']} | {s['ours_open']}/{n} | {s['base_open']}/{n} |"
        )
    print("(open set: each photo again with its own reference left out of the index, untimed; any accept is false)")
    print(
        "\nstage medians, ours (ms; over the photos where the stage ran, counted when not all; with two threads "
        "detect runs beside features and the keypoint votes beside embed, so the stages add up to more than the total):"
    )
    for name, s in rows.items():
        n = s["photos"]
        parts = ", ".join(
            f"{k} {percentile(v, 50):.0f}" + (f" ({len(v)}/{n})" if len(v) < n else "")
            for k, v in s["stages"].items()
            if k != "total"
        )
        print(f"- {name}: {parts}")


if __name__ == "__main__":
    main()
