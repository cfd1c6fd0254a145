"""``cover-id verify``: how reliably does an index tell its references apart?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(add_completion=False)


def _pct(x: Any) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) else "–"


def _name(ref: dict | None) -> str:
    return f"{ref['name']} ({ref['id']})" if ref else "–"


def print_report(console: Any, r: dict[str, Any]) -> None:
    """The terminal version of the report."""
    from rich.table import Table

    th = r["thresholds"]
    console.print(
        f"[bold]{r['index']}[/]: {r['references']} references, encoder '{r['encoder']}'"
        f"{' + projection head' if r['projection'] else ''}; thresholds from {th['source']} "
        f"(accept {th.get('accept_score')}, review {th.get('review_score')})",
        highlight=False,
    )
    st = r["self_test"]
    if st.get("n"):
        t = Table(
            title=f"self-test: {st['n']} synthetic phone photos of {st['references_tested']} references",
            title_justify="left",
        )
        for c in (
            "top-1",
            "top-5",
            "embedding top-1",
            "in candidates",
            "accepted & correct",
            "accepted wrong",
            "review",
            "rejected",
        ):
            t.add_column(c, justify="right")
        t.add_row(
            *[
                _pct(st[k])
                for k in (
                    "top1",
                    "top5",
                    "embedding_top1",
                    "embedding_recall_at_k",
                    "accepted_correct",
                    "accepted_wrong",
                    "review",
                    "rejected",
                )
            ]
        )
        console.print(t)
    mg = r["margins"]
    t = Table(title="margins: correct score - best wrong score (self-test)", title_justify="left")
    for c in ("", "median", "p5", "p10", "p25", "p75", "negative"):
        t.add_column(c, justify="right")
    for name in ("geometric", "embedding"):
        d = mg[name]
        if d.get("n"):
            t.add_row(name, *[f"{d[k]:+.3f}" for k in ("median", "p5", "p10", "p25", "p75")], _pct(d["negative"]))
    if t.row_count:
        console.print(t)
    g = mg["guidance"]
    colour = {"strong": "green", "medium": "yellow", "weak": "red"}.get(g["level"], "white")
    console.print(f"separation: [{colour}]{g['level']}[/]")
    for a in g["advice"]:
        console.print(f"  • {a}", highlight=False)
    if st.get("worst"):
        bad = [w for w in st["worst"] if w.get("margin_geom", 1) <= 0.1][:5]
        if bad:
            console.print("[bold]worst self-test confusions[/]")
            for w in bad:
                console.print(
                    f"  {w['input']}: {w['decision']} {w['match']}; margin {w['margin_geom']:+.2f} "
                    f"(correct {w['correct_geom']:.2f} vs {_name(w['best_wrong_ref'])} {w['best_wrong_geom']:.2f})",
                    highlight=False,
                )
    cp = r["confusable_pairs"]
    for key, title in (
        ("by_geometry", "confusable pairs (geometric)"),
        ("by_embedding", "confusable pairs (embedding)"),
    ):
        rows = cp.get(key) or []
        if rows:
            t = Table(title=title, title_justify="left")
            t.add_column("reference")
            t.add_column("looks like")
            for c in ("cosine", "geom", "inliers"):
                t.add_column(c, justify="right")
            for p in rows:
                t.add_row(
                    _name(p["a"]), _name(p["b"]), f"{p['cosine']:.3f}", f"{p['geom_score']:.3f}", str(p["inliers"])
                )
            console.print(t)
    ph = r.get("photos")
    if ph:
        t = Table(
            title=f"labelled photos: {ph['n']} ({ph['n_in_collection']} in the collection, {ph['n_absent']} absent)",
            title_justify="left",
        )
        cols = ["top-1", "top-5", "embedding top-1", "accepted & correct", "review", "rejected", "false accepts"]
        vals = [
            ph["top1"],
            ph["top5"],
            ph["embedding_top1"],
            ph["accepted_correct"],
            ph["review"],
            ph["rejected"],
            ph["false_accept_rate"],
        ]
        if "absent_rejected" in ph:
            cols.append("absent rejected")
            vals.append(ph["absent_rejected"])
        for c in cols:
            t.add_column(c, justify="right")
        t.add_row(*[_pct(v) for v in vals])
        console.print(t)
        for e in ph["errors"]:
            console.print(f"  [red]error[/] {e['input']}: {e['error']}", highlight=False)
        if ph["failures"]:
            console.print(f"[bold]failures ({len(ph['failures'])})[/]")
            for f in ph["failures"][:25]:
                console.print(
                    f"  {Path(f['input']).name}: {f['reason']} ({f['decision']}, geom {f['geom_score']:.2f}); "
                    f"truth {_name(f['truth_ref'])}"
                    + (f" {f['correct_geom']:.2f}" if f.get("correct_geom") is not None else "")
                    + f"; best wrong {_name(f['best_wrong_ref'])} {f['best_wrong_geom']:.2f}",
                    highlight=False,
                )
            if len(ph["failures"]) > 25:
                console.print(f"  … and {len(ph['failures']) - 25} more (see --json or --report)")
    cal = r.get("calibration")
    if cal:
        b, a = cal["before"], cal["after"]
        console.print(
            f"[green]calibrated[/] from {cal['n_photos']} photos for false-accept rate <= {cal['target_far']:.1%}: "
            f"accept {cal['accept_score']}, review {cal['review_score']} (worst wrong candidate {cal['worst_negative']}); "
            f"accepted & correct {_pct(b['accepted_correct'])} -> {_pct(a['accepted_correct'])}, "
            f"false accepts {b['false_accepts']} -> {a['false_accepts']} of {a['trials']} trials; stored in the index",
            highlight=False,
        )
        if cal.get("warning"):
            console.print(f"[yellow]note:[/] {cal['warning']}")
    console.print(f"[dim]{r['seconds']} s[/]")


@app.command()
def verify(
    index: Path = typer.Option(..., "--index", "-i", help="Index folder from `cover-id index`."),
    queries: Path | None = typer.Option(
        None, "--queries", help="CSV photo,reference of labelled photos (empty reference: not in the collection)."
    ),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Pick accept/review thresholds from --queries and store them in the index."
    ),
    target_far: float = typer.Option(0.0, "--target-far", help="False-accept rate --calibrate aims for."),
    samples: int = typer.Option(200, "--samples", "--limit", help="References in the self-test (0: all, -1: skip it)."),
    views: int = typer.Option(1, "--views", help="Synthetic photos per tested reference."),
    strength: float = typer.Option(
        1.0, "--strength", help="How hard the synthetic photos are (0.5 easy, 1 typical, 1.5 harsh)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for sampling and synthetic photos."),
    pairs: int = typer.Option(10, "--pairs", help="Confusable pairs to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report here."),
    top_k: int | None = typer.Option(None, "--top-k", help="Candidates retrieved per variant."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Self-test under photo conditions, confusable pairs, margins, labelled photos, calibration."""
    import json
    import sys

    from rich.console import Console

    from cover_id.config import load_settings
    from cover_id.errors import CoverIdError
    from cover_id.evaluate.report import run_verify

    if views < 1:
        raise CoverIdError("--views must be at least 1")
    settings = load_settings({"top_k": top_k, "threads": threads})
    run = run_verify(
        index,
        queries=queries,
        samples=samples,
        views=views,
        seed=seed,
        strength=strength,
        do_calibrate=calibrate,
        target_far=target_far,
        settings=settings,
        show_progress=not as_json and sys.stderr.isatty(),
        pairs=pairs,
    )
    r = run.report
    if report is not None:
        from cover_id.evaluate.html import write_report

        write_report(report, r, run.store, run.probes)
    if as_json:
        sys.stdout.write(json.dumps(r, ensure_ascii=False, indent=2) + "\n")
    else:
        console = Console()
        print_report(console, r)
        if report is not None:
            console.print(f"report: {report}", highlight=False)
