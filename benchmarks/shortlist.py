"""Keypoint-vote shortlist: recall, latency and memory of the nearest-neighbour voter and the inverted file.

For an existing index (the DVD dev index, or a scale index of ``benchmarks/scale.py``)
it extracts the dev photos' keypoints as identify does, then ranks the references
three ways: the index's own descriptor voter (a nearest-neighbour search over every
reference descriptor), an inverted file over visual words fitted here on the
index's keypoints (:class:`cover_id.index.vote.WordVoter`: visual words with
Hamming signatures, lists on disk, at a few signature settings), and each fused with the global vector search, as identify
fuses them. It prints recall at 1/5/15/25 for each, per-photo latency and the
inverted file's size.

    python benchmarks/shortlist.py                       # the 358-reference DVD index
    python benchmarks/shortlist.py --index .cache/bench/scale/index_10000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import dvd_index, percentile, truth


def ranks(lists: list[list[int]], want: list[int | None]) -> list[int]:
    """Rank of the true reference in each list (a large number when absent)."""
    return [lst.index(w) if w is not None and w in lst else 10**6 for lst, w in zip(lists, want)]


def recall_line(name: str, r: list[int], ms: list[float] | None = None) -> str:
    n = len(r)
    cells = " | ".join(f"{100 * sum(x < k for x in r) / n:5.1f}" for k in (1, 5, 15, 25))
    lat = f" | {percentile(ms, 50):6.1f} / {percentile(ms, 95):6.1f}" if ms else " | –"
    return f"| {name} | {cells}{lat} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=None, help="index folder (default: the DVD dev index)")
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--coarse", type=int, default=256)
    ap.add_argument("--fine", type=int, default=0, help="second-level words per cell (default: the build's rule)")
    ap.add_argument("--train", type=int, default=0, help="descriptors sampled to learn the vocabulary (default: rule)")
    ap.add_argument("--max-postings", type=int, default=None, help="per-query posting budget (default: the voter's)")
    ap.add_argument("--skip-nn", action="store_true", help="leave out the nearest-neighbour voter (slow at 10k)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--words", type=Path, default=None, help="keep (or reuse) the visual-word lists in this folder")
    args = ap.parse_args()

    from cover_id.runtime import set_threads

    set_threads(args.threads)

    from cover_id.identify.retrieve import fuse
    from cover_id.identify.views import photo_features
    from cover_id.imageio import read_image
    from cover_id.index.store import IndexStore
    from cover_id.index.vote import WordVoter, vocabulary_for

    index = args.index or dvd_index()
    store = IndexStore.open(index)
    by_file = {r["filename"]: i for i, r in enumerate(store.records)}
    pairs = truth()[: args.photos]
    want = [by_file.get(ref) for _, ref in pairs]
    print(f"index {index}: {store.size} references; {len(pairs)} DVD photos")

    t = time.perf_counter()
    queries = [photo_features(read_image(p, max_side=800)) for p, _ in pairs]
    print(f"photo keypoints: {time.perf_counter() - t:.1f}s")

    enc = store.create_encoder()
    vecs = store.embed(enc.encode_features(queries))
    t = time.perf_counter()
    _, idx = store.search(vecs, 25)
    g_lists = [[int(i) for i in row if i >= 0] for row in idx]
    print(
        f"global search: {(time.perf_counter() - t) * 1e3 / len(pairs):.1f} ms/photo; compact vectors {store.manifest.get('search')}"
    )

    rows: list[str] = []
    if store.has_voter and not args.skip_nn and store.manifest.get("voter_kind") != "words":
        voter = store.voter()
        nn_lists, nn_ms = [], []
        for q in queries:
            t = time.perf_counter()
            nn_lists.append([i for i, _ in voter.shortlist(q, top=25)])
            nn_ms.append((time.perf_counter() - t) * 1e3)
        rows.append(recall_line("nearest-neighbour voter (the index's)", ranks(nn_lists, want), nn_ms))
        rows.append(
            recall_line(
                "  fused with global search", ranks([fuse([a, b], 25) for a, b in zip(nn_lists, g_lists)], want)
            )
        )

    import tempfile

    n_desc = int(store.keypoint_counts().sum())
    coarse, fine, train = vocabulary_for(n_desc)
    fine, train = args.fine or fine, args.train or train
    print(f"{n_desc} reference descriptors: vocabulary {args.coarse} x {fine}, trained on {train} descriptors")
    wv = WordVoter(coarse=args.coarse, fine=fine, train_samples=train)
    live = list(range(store.size))
    sample = [store.features[i] for i in live[:: max(1, len(live) // max(2000, train // 800))]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.words or Path(tmp)
        t = time.perf_counter()
        if not (folder / "vocab.npz").is_file():
            wv.build(folder, store.size, lambda s: store.features[s], sample)
        t_fit = time.perf_counter() - t
        size = sum(f.stat().st_size for f in folder.iterdir())
        wv = WordVoter.load(folder)
        if args.max_postings is not None:
            wv.max_postings = args.max_postings
        run_words(wv, queries, want, g_lists, rows)
    print(
        f"visual-word lists: {wv.vocab.n_words} words, built in {t_fit:.0f}s, on disk {size / 2**20:.1f} MiB "
        f"({size / max(1, store.size) / 1024:.1f} KiB/reference; the vocabulary "
        f"{(wv.vocab.c2.nbytes + wv.medians.nbytes) / 2**20:.0f} MiB in memory)"
    )
    rows.append(
        recall_line(f"global vectors alone ({store.manifest.get('search', {}).get('type')})", ranks(g_lists, want))
    )
    print("\n| shortlist | R@1 | R@5 | R@15 | R@25 | ms p50 / p95 |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


def run_words(wv: Any, queries: list[Any], want: list[int | None], g_lists: list[list[int]], rows: list[str]) -> None:
    """Recall and latency of the visual-word voter at a few signature settings."""
    from cover_id.identify.retrieve import fuse

    budget = wv.max_postings
    for h, sigma, a, cap in ((24, 12.0, 2, 0), (24, 12.0, 2, budget), (24, 12.0, 1, budget)):
        wv.max_hamming, wv.sigma, wv.assign, wv.max_postings = h, sigma, a, cap
        lists, ms = [], []
        for q in queries:
            t = time.perf_counter()
            lists.append([i for i, _ in wv.shortlist(q, top=25)])
            ms.append((time.perf_counter() - t) * 1e3)
        rows.append(
            recall_line(
                f"visual words, <= {h} bits, {a} word(s) per descriptor, "
                + (f"budget {cap} postings" if cap else "no budget"),
                ranks(lists, want),
                ms,
            )
        )
        rows.append(
            recall_line("  fused with global search", ranks([fuse([x, g], 25) for x, g in zip(lists, g_lists)], want))
        )


if __name__ == "__main__":
    main()
