"""Indexing speed (images/s) for each encoder on the DVD references + distractors.

The clip and dinov2 encoders run with random weights here (no weights can be
downloaded offline); their speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import refs_folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoders", default="local,clip")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from cover_id.index.build import build_index

    refs = refs_folder()
    n = sum(1 for p in refs.rglob("*") if p.is_file() or p.is_symlink())
    print(f"{n} reference images ({refs}), {args.threads} threads")
    for enc in args.encoders.split(","):
        tmp = Path(tempfile.mkdtemp())
        try:
            settings = {"encoder": enc, "threads": args.threads}
            if enc in ("clip", "dinov2"):
                settings["pretrained"] = None
            t = time.perf_counter()
            rep = build_index(tmp / "idx", refs=refs, settings=settings, show_progress=False)
            total = time.perf_counter() - t
            t = time.perf_counter()
            rep2 = build_index(tmp / "idx", refs=refs, settings=settings, show_progress=False)
            again = time.perf_counter() - t
            size = sum(f.stat().st_size for f in (tmp / "idx").iterdir()) / 1e6
            print(
                f"{enc:6s} indexed {rep.indexed} in {total:.1f}s: {rep.images_per_second:.1f} images/s embedding "
                f"({rep.indexed / total:.1f}/s end-to-end incl. model load), index {size:.1f} MB; "
                f"unchanged re-run {again:.1f}s (reused {rep2.reused})"
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
