"""Edition benchmark: other editions built from real DVD covers.

An "other edition" keeps part of a real reference's artwork and replaces the
rest: a new title block (another language or a re-release), a new layout
(the artwork scaled onto a new background with a new title band), or new
artwork under the same title band (a foreign edition whose title lettering is
drawn the same; the artwork is a real painting from ``paintings/references``,
not in the DVD index). The index
holds the 100 DVD references and 258 distractor covers, not the editions.
A photo of an edition must not be accepted as the original (``review`` naming
it is right); photos of the unmodified originals, made the same way, are the
control and should be accepted.

Measured through the public CLI (``cover-id index`` / ``cover-id identify --json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from cardgen import SYLLABLES, photograph
from common import CACHE, DATA, DVD, cli, cli_identify, refs_folder

FONTS = (cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_DUPLEX)


def _title(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    color = tuple(int(c) for c in rng.integers(0, 255, 3))
    cv2.rectangle(img, (x0, y0), (x1, y1), color, -1)
    ink = (255, 255, 255) if sum(color) < 380 else (0, 0, 0)
    words = ["".join(rng.choice(SYLLABLES, int(rng.integers(1, 3)))).upper() for _ in range(int(rng.integers(2, 4)))]
    lines = [" ".join(words[:2]), " ".join(words[2:])] if len(words) > 2 else [" ".join(words)]
    font = FONTS[int(rng.integers(len(FONTS)))]
    step = (y1 - y0) / (len(lines) + 1)
    for i, line in enumerate(lines):
        scale = max(0.4, min(2.5, (x1 - x0) * 0.9 / max(1, cv2.getTextSize(line, font, 1.0, 2)[0][0])))
        cv2.putText(img, line, (x0 + 8, int(y0 + step * (i + 1) + 10 * scale)), font, scale, ink, 2, cv2.LINE_AA)


KINDS = ("original", "retitle", "relayout", "reart")


def _artwork(rng: np.random.Generator) -> np.ndarray:
    """A real image that is not in the DVD index: one of the paintings' references."""
    paintings = sorted((DATA / "paintings" / "references").iterdir())
    return cv2.imread(str(paintings[int(rng.integers(len(paintings)))]), cv2.IMREAD_COLOR)


def make_edition(cover: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Another edition of ``cover``: ``retitle`` (keep the top, new title block), ``relayout`` (the art
    smaller on a new layout) or ``reart`` (keep a band at the top or bottom, 12-40 % of the height, where
    DVD titles usually are; new artwork everywhere else)."""
    h, w = cover.shape[:2]
    if kind == "reart":
        keep, top = rng.uniform(0.12, 0.4), bool(rng.integers(2))
        y0, y1 = (int(h * keep), h) if top else (0, int(h * (1 - keep)))
        out = cover.copy()
        out[y0:y1] = cv2.resize(_artwork(rng), (w, y1 - y0), interpolation=cv2.INTER_AREA)
        return out
    if kind == "retitle":
        keep = rng.uniform(0.55, 0.75)
        out = cover.copy()
        _title(out, rng, (0, int(h * keep), w - 1, h - 1))
        return out
    out = np.empty_like(cover)
    out[:] = tuple(int(c) for c in rng.integers(0, 255, 3))
    s = rng.uniform(0.6, 0.75)
    art = cv2.resize(cover[: int(h * 0.7)], (int(w * s), int(h * 0.7 * s)), interpolation=cv2.INTER_AREA)
    x0 = int(rng.integers(0, w - art.shape[1] + 1))
    y0 = h - art.shape[0] - int(rng.integers(0, int(h * 0.05) + 1))
    out[y0 : y0 + art.shape[0], x0 : x0 + art.shape[1]] = art
    _title(out, rng, (0, 0, w - 1, max(1, y0 - 4)))
    return out


def measure(count: int = 50, seed: int = 0) -> tuple[list[tuple[str, str, str, str | None, str | None]], float]:
    """Make (once) the editions and their photos and identify them through the CLI against the DVD index.

    Returns (rows of (kind, original filename, decision, matched filename, reason), seconds).
    """
    rng = np.random.default_rng(seed)
    work = CACHE / f"editions_{count}_{seed}"
    index = CACHE / "index_cli_dvd"
    cli("index", "--refs", str(refs_folder()), "--out", str(index))  # incremental: cheap when up to date
    refs = sorted((DVD / "references").iterdir())
    picks = [refs[i] for i in sorted(rng.permutation(len(refs))[:count])]
    jobs: list[tuple[str, str, Path]] = []  # (kind, original filename, photo)
    work.mkdir(parents=True, exist_ok=True)
    for n, ref in enumerate(picks):
        cover = cv2.imread(str(ref), cv2.IMREAD_COLOR)
        for k, kind in enumerate(KINDS):
            photo = work / f"{ref.stem}_{kind}.jpg"
            if not photo.exists():
                face = cover if kind == "original" else make_edition(cover, kind, np.random.default_rng(n * 10 + k))
                cv2.imwrite(str(photo), photograph(face, seed=seed * 100_000 + n * 10 + k))
            jobs.append((kind, f"references/{ref.name}", photo))
    t0 = time.perf_counter()
    results = cli_identify([p for _, _, p in jobs], index)
    rows = [
        (kind, orig, r["decision"], (r.get("match") or {}).get("filename"), r.get("reason"))
        for (kind, orig, _), r in zip(jobs, results)
    ]
    return rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50, help="references turned into an edition of each kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--failures", action="store_true")
    args = ap.parse_args()
    rows5, secs = measure(args.count, args.seed)
    rows = [r[:4] for r in rows5]
    print(f"editions: {args.count} DVD references, {len(rows)} photos, index of 358 covers ({secs:.0f} s)")
    print(
        "| photos of | n | accepted as the original | review | of which naming the original | reject | other accepts |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in KINDS:
        got = [(orig, d, f) for k, orig, d, f in rows if k == kind]
        as_orig = sum(1 for o, d, f in got if d == "accept" and f == o)
        review = sum(1 for o, d, f in got if d == "review")
        naming = sum(1 for o, d, f in got if d == "review" and f == o)
        reject = sum(1 for o, d, f in got if d == "reject")
        other = sum(1 for o, d, f in got if d == "accept" and f != o)
        label = "originals (control)" if kind == "original" else f"editions: {kind}"
        print(f"| {label} | {len(got)} | {as_orig} | {review} | {naming} | {reject} | {other} |")
        if args.failures:
            for o, d, f in got:
                if (kind == "original") != (d == "accept" and f == o):
                    print(f"    {kind} of {o}: {d} {f}")


if __name__ == "__main__":
    main()
