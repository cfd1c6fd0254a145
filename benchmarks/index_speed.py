"""Indexing speed (images/s) for each encoder on the DVD references + distractors, and where the time goes.

For every encoder: a fresh build with the default ``--workers`` (one extraction
thread per usable core) and, with ``--compare``, one with ``--workers 1`` right
after it, so the two can be compared as a ratio on a busy machine. Each build
prints its phases (wall seconds): features (decode + RootSIFT, and vectors for
encoders that need no fitting), codebook fit, VLAD vectors, compact search
index, keypoint-vote index.

The clip and dinov2 encoders run with random weights here (no weights can be
downloaded offline); their speed does not depend on the weights' values.

    python benchmarks/index_speed.py [--encoders local,clip] [--threads 2] [--compare]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import refs_folder

PHASES = {
    "_extract_and_append": "features",
    "_fit_codebook": "codebook",
    "_encode_pending": "vectors",
    "_fit_voter": "vote index",
    "_build_search": "search+votes",
}


def timed_phases() -> dict[str, float]:
    """Wrap the build's phase functions so that each call adds its wall seconds to the returned dict."""
    import cover_id.index.build as build

    spent: dict[str, float] = defaultdict(float)

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[PHASES[name]] += time.perf_counter() - t

        return inner

    for name in PHASES:
        setattr(build, name, wrap(name, getattr(build, name)))
    return spent


def one_build(refs: Path, settings: dict[str, Any], workers: int | None, spent: dict[str, float]) -> str:
    from cover_id.index.build import build_index

    spent.clear()
    tmp = Path(tempfile.mkdtemp())
    try:
        t = time.perf_counter()
        rep = build_index(tmp / "idx", refs=refs, settings=settings, show_progress=False, workers=workers)
        total = time.perf_counter() - t
        t = time.perf_counter()
        rep2 = build_index(tmp / "idx", refs=refs, settings=settings, show_progress=False, workers=workers)
        again = time.perf_counter() - t
        size = sum(f.stat().st_size for f in (tmp / "idx").iterdir()) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    search = spent.pop("search+votes", 0.0)
    spent["search"] = search - spent.get("vote index", 0.0)
    phases = ", ".join(f"{k} {v:.1f}" for k, v in spent.items() if v > 0.05)
    return (
        f"indexed {rep.indexed} in {total:.1f}s: {rep.images_per_second:.1f} images/s embedding, "
        f"{rep.indexed / total:.1f}/s end-to-end incl. model load; phases (s): {phases}; "
        f"index {size:.1f} MB; unchanged re-run {again:.1f}s (reused {rep2.reused})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoders", default="local,clip")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", action="store_true", help="also build with --workers 1 (inline extraction)")
    args = ap.parse_args()

    refs = refs_folder()
    n = sum(1 for p in refs.rglob("*") if p.is_file() or p.is_symlink())
    load = os.getloadavg()[0]
    print(f"{n} reference images ({refs}), {args.threads} threads, load average {load:.1f} on {os.cpu_count()} cores")
    spent = timed_phases()
    for enc in args.encoders.split(","):
        settings: dict[str, Any] = {"encoder": enc, "threads": args.threads}
        if enc in ("clip", "dinov2"):
            settings["pretrained"] = None
        print(f"{enc:6s} default workers: {one_build(refs, settings, None, spent)}")
        if args.compare:
            print(f"{enc:6s} --workers 1:     {one_build(refs, settings, 1, spent)}")


if __name__ == "__main__":
    main()
