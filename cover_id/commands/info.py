"""``cover-id info INDEX``: what an index holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


@app.command()
def info(
    index: Path = typer.Argument(..., help="Index folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
    limit: int = typer.Option(10, "--limit", help="How many references to list."),
) -> None:
    """Show an index's encoder, size, calibration and a few references."""
    from rich.console import Console
    from rich.table import Table

    from cover_id.index.store import IndexStore, describe_spec
    from cover_id.server.collection import orphan_images
    from cover_id.store_io import stale_leftovers

    store = IndexStore.open(index)
    m = store.manifest
    n_kp = int(store.keypoint_counts().sum())
    added_dir = Path(index).resolve().parent / f"{Path(index).resolve().name}.added"
    leftovers = [str(p) for p in stale_leftovers(Path(index)) + orphan_images(store, added_dir)]
    summary = {
        "path": str(index),
        "count": store.size,
        "dim": store.dim,
        "encoder": m["encoder"],
        "projection": m.get("projection"),
        "calibration": m.get("calibration"),
        "refs_root": m.get("refs_root"),
        "source": m.get("source"),
        "keypoints": n_kp,
        "skipped": len(m.get("skipped", [])),
        "duplicates": len(m.get("duplicates", [])),
        "created": m.get("created"),
        "updated": m.get("updated"),
        "build_seconds": m.get("build_seconds"),
        "format": m.get("format"),
        "search": m.get("search"),
        "vote_index": (m.get("voter_kind") or "nn") if m.get("voter", True) else None,
        "tombstones": store.dead,
        "leftovers": leftovers,
        "references": store.records[:limit],
    }
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    console = Console()
    console.print(f"[bold]{index}[/]: {store.size} references, {store.dim}-d vectors")
    console.print(
        f"encoder     {describe_spec(m['encoder'])}  weights={m['encoder'].get('weights', '-')}", highlight=False
    )
    proj = m.get("projection")
    console.print(
        f"projection  {proj['fingerprint'] + ' (' + str(proj['in_dim']) + '->' + str(proj['out_dim']) + ')' if proj else 'none'}"
    )
    cal = m.get("calibration")
    console.print(f"calibration {json.dumps(cal) if cal else 'none (built-in thresholds)'}", highlight=False)
    console.print(f"keypoints   {n_kp} ({n_kp / max(store.size, 1):.0f} per reference)")
    console.print(f"source      {m.get('source', {}).get('path')}  (root {m.get('refs_root')})", highlight=False)
    console.print(f"skipped {summary['skipped']}, duplicates {summary['duplicates']}, updated {m.get('updated')}")
    search = m.get("search") or {}
    console.print(
        f"format {m.get('format')}, search {search.get('type')} over {search.get('dim')}-d compact vectors, "
        f"keypoint votes {summary['vote_index'] or 'off'}, {summary['tombstones']} deleted (reclaimed by `cover-id index --compact`)",
        highlight=False,
    )
    if leftovers:
        console.print(f"[yellow]leftovers of interrupted writes ({len(leftovers)}), removed on the next write:[/]")
        for p in leftovers:
            console.print(f"  {p}", markup=False, highlight=False)
    table = Table("id", "name", "filename", "fields")
    for r in store.records[:limit]:
        extra = {k: v for k, v in r.items() if k not in ("id", "name", "filename")}
        table.add_row(r["id"], r["name"], r["filename"], json.dumps(extra, ensure_ascii=False) if extra else "")
    console.print(table)
    if store.size > limit:
        console.print(f"... and {store.size - limit} more (--limit N)")
