"""What does a projection head buy on real photos? (dvd-covers, offline ``local`` encoder)

Builds an index of the 100 references + 258 distractors, identifies the 100
phone photos, trains a head with ``--index`` (SupCon on augmented views),
re-projects the index with it (no re-embedding) and identifies the photos
again. Prints embedding-only and full-pipeline accuracy and margins, before
and after.

    .venv/bin/python benchmarks/train_gain.py [--views 4] [--epochs 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dvd-covers"


def _refs_folder(work: Path) -> Path:
    """references/ and distractors/ side by side (file symlinks), the collection's refs root."""
    refs = work / "refs"
    for name in ("references", "distractors"):
        (refs / name).mkdir(parents=True, exist_ok=True)
        for f in sorted((DATA / name).glob("*.jpg")):
            link = refs / name / f.name
            if not link.exists():
                link.symlink_to(f)
    return refs


def _evaluate(index: Path, settings: dict) -> dict:
    from cover_id.evaluate.labelled import label_photos, read_truth
    from cover_id.evaluate.probe import Prober
    from cover_id.evaluate.stats import distribution, summarize_probes
    from cover_id.pipeline import Identifier

    ident = Identifier.from_index(index, settings)
    truth = read_truth(DATA / "truth.csv", ident.store)
    t0 = time.perf_counter()
    probes, errors = label_photos(Prober(ident), truth, show_progress=sys.stderr.isatty())
    s = summarize_probes(probes, ident.store, int(ident.settings["top_k"]))
    s["errors"] = len(errors)
    s["seconds_per_photo"] = (time.perf_counter() - t0) / max(1, len(probes))
    s["cos_margin"] = distribution([float(p.sims[p.truth]) - p.best_wrong_cos()[1] for p in probes])
    s["geom_margin"] = distribution([p.geom(p.truth) - p.best_wrong_geom()[1] for p in probes])
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=4, help="augmented views per reference in the bank")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--holdout", type=int, default=1, help="held-out views per reference (epoch choice, margins)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cover-id-train-gain")
    ap.add_argument("--fresh", action="store_true", help="rebuild the base index even if cached")
    args = ap.parse_args()
    if not (DATA / "references").is_dir():
        sys.exit(f"data not found: {DATA}")

    from cover_id.index.build import build_index
    from cover_id.runtime import set_threads
    from cover_id.training import TrainConfig, train

    set_threads(args.threads)
    settings = {"threads": args.threads}
    work = args.work
    refs = _refs_folder(work)
    base, headed, head = work / "index-base", work / "index-head", work / "head.npz"
    t0 = time.perf_counter()
    if args.fresh or not (base / "manifest.json").is_file():
        build_index(base, refs=refs, settings={"encoder": "local", **settings}, rebuild=True, show_progress=False)
    t_index = time.perf_counter() - t0
    print(f"[{t_index:.0f}s] base index ready; identifying photos", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    before = _evaluate(base, settings)
    t_eval = time.perf_counter() - t0
    print(f"[{t_eval:.0f}s] photos done; encoding views and training", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, views=args.views, holdout=args.holdout, seed=args.seed)
    result = train(head, index=base, cfg=cfg, settings=settings, show_progress=sys.stderr.isatty())
    t_train = time.perf_counter() - t0
    print(f"[{t_train:.0f}s] head trained; re-projecting and identifying again", file=sys.stderr, flush=True)

    if headed.exists():
        shutil.rmtree(headed)
    shutil.copytree(base, headed)
    rep = build_index(
        headed, refs=refs, settings={"encoder": "local", **settings}, projection_path=head, show_progress=False
    )
    assert rep.embedded == 0, "re-projection should not re-embed"
    after = _evaluate(headed, settings)

    def row(name: str, b: float, a: float, pct: bool = True) -> None:
        f = (lambda v: f"{v:7.1%}") if pct else (lambda v: f"{v:+7.3f}")
        print(f"  {name:<34}{f(b)}  ->{f(a)}")

    print(
        f"dvd-covers: {before['n']} photos, index of {rep.indexed} covers (100 references + distractors), encoder 'local'"
    )
    print(
        f"head: {result.projection.in_dim}->{result.projection.out_dim}, {result.epochs_done} epochs, "
        f"{args.views} views/reference, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, "
        f"kept epoch {result.kept_epoch} (0 = encoder unchanged)"
    )
    print("held-out synthetic views (cosine margin, embedding top-1):")
    row("median margin", result.before["median"], result.after["median"], pct=False)
    row("top-1", result.before["top1"], result.after["top1"])
    print("real photos:                           before     after")
    row("embedding-only top-1", before["embedding_top1"], after["embedding_top1"])
    row("embedding-only top-5", before["embedding_top5"], after["embedding_top5"])
    row("true reference in top-k candidates", before["embedding_recall_at_k"], after["embedding_recall_at_k"])
    row("median embedding margin", before["cos_margin"]["median"], after["cos_margin"]["median"], pct=False)
    row("full-pipeline top-1", before["top1"], after["top1"])
    row("full-pipeline accepted & correct", before["accepted_correct"], after["accepted_correct"])
    row("median geometric margin", before["geom_margin"]["median"], after["geom_margin"]["median"], pct=False)
    print(
        f"time: index {t_index:.0f}s, photos {before['seconds_per_photo']:.2f}s each ({t_eval:.0f}s), "
        f"views + training {t_train:.0f}s (views {result.projection.meta.get('bank_seconds')}s)"
    )


if __name__ == "__main__":
    main()
