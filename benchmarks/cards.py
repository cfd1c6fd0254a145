"""Trading-card benchmark: a generated set that behaves like a real one.

Every card shares one frame template and one of a few rules texts; cards
differ by artwork and name. The collection holds present cards and some
same-art variants (set code, rarity stamp, foil). Synthetic phone photos (in a
sleeve, in a hand, on a playmat; glare, perspective, blur, JPEG) of:

- present cards and present variants: should be accepted as exactly that printing;
- absent cards (same frame and rules texts, other art): must not be accepted;
- absent variants (same art as a present card): must not be accepted as it
  (``review`` naming the look-alike is right).

Measured through the public CLI (``cover-id index`` / ``cover-id identify --json``).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import cv2
from cardgen import DIFFER_REGIONS, Card, make_set, photograph, photograph_seen, render
from common import CACHE, DVD, cli, cli_identify

ART_DIR = DVD / "distractors"  # artwork from real images that are not references


def card_set(present_n: int, absent_n: int, variants_n: int, seed: int) -> dict[str, list[Card]]:
    """The set's printings by group (present, present_variant, absent, absent_variant), in the order their
    photos are made: the n-th printing's photo has the seed :func:`photo_seed` gives."""
    present, absent, pvar, avar = make_set(
        sorted(p.name for p in ART_DIR.iterdir()), present_n, absent_n, variants_n, seed
    )
    return {"present": present, "present_variant": pvar, "absent": absent, "absent_variant": avar}


def photo_seed(seed: int, n: int) -> int:
    return seed * 100_000 + n


def base_key(key: str) -> str:
    """The card a printing is a variant of (``LOCH-EN004-v1`` -> ``LOCH-EN004``), or the card itself."""
    return key.split("-v")[0]


def measure(
    present_n: int = 150, absent_n: int = 40, variants_n: int = 30, seed: int = 0, rebuild: bool = False
) -> tuple[list[tuple[str, str, str, str | None, str | None]], dict[str, str], float]:
    """Generate (once) the set and its photos, index it and identify every photo through the CLI.

    Returns (rows of (group, card key, decision, matched key, reason), variant key -> its base key, seconds).
    """
    work = CACHE / f"cards_{present_n}_{absent_n}_{variants_n}_{seed}"
    if rebuild and work.exists():
        shutil.rmtree(work)
    groups = card_set(present_n, absent_n, variants_n, seed)
    refs, photos = work / "refs", work / "photos"
    if not refs.exists():
        refs.mkdir(parents=True, exist_ok=True)
        photos.mkdir(parents=True, exist_ok=True)
        for n, c in enumerate(c for cards in groups.values() for c in cards):
            face = render(c, ART_DIR)
            if c in groups["present"] or c in groups["present_variant"]:
                cv2.imwrite(str(refs / f"{c.key}.jpg"), face, [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(photos / f"{c.key}.jpg"), photograph(face, seed=photo_seed(seed, n)))
    cli("index", "--refs", str(refs), "--out", str(work / "index"), "--rebuild")

    base_of = {v.key: base_key(v.key) for v in groups["present_variant"] + groups["absent_variant"]}
    t0 = time.perf_counter()
    rows = []
    for group, cards in groups.items():
        results = cli_identify([photos / f"{c.key}.jpg" for c in cards], work / "index")
        for c, r in zip(cards, results):
            got = Path((r.get("match") or {}).get("filename") or "").stem or None
            rows.append((group, c.key, r["decision"], got, r.get("reason")))
    return rows, base_of, time.perf_counter() - t0


def telling_seen(present_n: int = 150, absent_n: int = 40, variants_n: int = 30, seed: int = 0) -> dict[str, float]:
    """For each card that has twins (other printings of its artwork, in the collection or not): the fraction
    of the region telling it from them that its photo shows (the least seen of its set code and rarity
    stamp, where those differ; 1.0 when a foil sheen over the art tells them apart). Photos are replayed
    with the seeds :func:`measure` made them with: the same pixels."""
    ordered = [c for cards in card_set(present_n, absent_n, variants_n, seed).values() for c in cards]
    printings: dict[str, list[Card]] = {}
    for c in ordered:
        printings.setdefault(base_key(c.key), []).append(c)
    out = {}
    for n, c in enumerate(ordered):
        twins = [t for t in printings[base_key(c.key)] if t.key != c.key]
        if not twins:
            continue
        if any(t.foil != c.foil for t in twins):
            out[c.key] = 1.0
            continue
        regions = {
            "set_code": any(t.set_code != c.set_code for t in twins),
            "stamp": any(t.rarity != c.rarity for t in twins),
        }
        wanted = {k: DIFFER_REGIONS[k] for k, differs in regions.items() if differs}
        _, seen = photograph_seen(render(c, ART_DIR), photo_seed(seed, n), wanted)
        out[c.key] = min(seen.values(), default=1.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--present", type=int, default=150)
    ap.add_argument("--absent", type=int, default=40)
    ap.add_argument("--variants", type=int, default=30, help="present variants (and as many absent ones)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="generate the cards and photos again")
    ap.add_argument("--failures", action="store_true")
    args = ap.parse_args()
    rows, base_of, secs = measure(args.present, args.absent, args.variants, args.seed, args.rebuild)
    groups = ("present", "present_variant", "absent", "absent_variant")
    count = {g: sum(1 for r in rows if r[0] == g) for g in groups}
    print(
        f"cards: {count['present']} present + {count['present_variant']} present variants indexed; "
        f"{count['absent']} absent, {count['absent_variant']} absent variants; "
        f"{len(rows)} photos ({secs:.0f} s)"
    )
    seen = telling_seen(args.present, args.absent, args.variants, args.seed)
    print(
        "| photos of | n | accepted-correct | review | of which the region telling it from its twin is "
        "less than half seen | reject | false accepts | accepted as its variant twin |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for group in groups:
        g = [r[:4] for r in rows if r[0] == group]
        n = len(g)
        in_collection = group.startswith("present")
        correct = sum(1 for _, key, d, got in g if d == "accept" and got == key) if in_collection else 0
        false = sum(1 for _, key, d, got in g if d == "accept" and got != key)
        twins = sum(
            1
            for _, key, d, got in g
            if d == "accept" and got != key and got is not None and base_of.get(key, key) == base_of.get(got, got)
        )
        review = sum(1 for r in g if r[2] == "review")
        hidden = sum(1 for r in g if r[2] == "review" and seen.get(r[1], 1.0) < 0.5)
        reject = sum(1 for r in g if r[2] == "reject")
        acc = f"{correct / n:.1%}" if in_collection else "-"
        print(f"| {group.replace('_', ' ')} | {n} | {acc} | {review} | {hidden} | {reject} | {false} | {twins} |")
        if args.failures:
            for _, key, d, got in g:
                if (in_collection and (d != "accept" or got != key)) or (not in_collection and d == "accept"):
                    telling = f", telling region {seen[key]:.0%} seen" if key in seen else ", no twin"
                    print(f"    {key}: {d} {got}{telling}")


if __name__ == "__main__":
    main()
