"""``cover-id index``: embed a folder or catalog of references into an index."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


@app.command()
def index(
    refs: Path | None = typer.Option(None, "--refs", help="Folder of reference images (searched recursively)."),
    metadata: Path | None = typer.Option(None, "--metadata", help="JSON Lines catalog instead of --refs."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to create or update."),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help="auto (default), clip or local."),
    model: str | None = typer.Option(None, "--model", help="open_clip model name (clip encoder)."),
    pretrained: str | None = typer.Option(
        None, "--pretrained", help="Weights: an open_clip tag, hf-hub:org/name, a local file, or 'none'."
    ),
    projection: Path | None = typer.Option(None, "--projection", help="Projection head from `cover-id train`."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Re-embed everything instead of only new/changed files."),
    compact: bool = typer.Option(
        False,
        "--compact",
        help="Rewrite --out without deleted references, then exit (or after indexing). With none deleted,"
        " only re-learns compact vectors of an older kind from the stored vectors.",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Decode and extract features on N threads (default: one per CPU thread; 1 for under 8 images).",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Spread decoding and features over a Ray cluster: an address, 'auto' (a running one) or 'local'.",
    ),
    device: str | None = typer.Option(None, "--device", help="torch device for clip (cpu, cuda)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table, just the summary line."),
) -> None:
    """Embed every reference image into the index (incremental: only new and changed files)."""
    from rich.console import Console

    from cover_id.config import load_settings
    from cover_id.errors import CoverIdError
    from cover_id.index.build import build_index

    if workers is not None and workers < 1:
        raise CoverIdError(f"--workers must be at least 1 (got {workers})")
    if refs is None and metadata is None and (out / "manifest.json").is_file():
        from cover_id.index.store import IndexStore

        store = IndexStore.open(out)
        dead = store.dead
        # compact vectors of an older kind, and nothing to drop: re-learned in place from the stored vectors
        if store.search_is_stale and (dead == 0 or not compact):
            store.relearn_search(show=not quiet)
            Console().print(
                f"[green]re-learned[/] the compact vectors of {out} from its stored vectors: {store.size} "
                f"references, {store.manifest['search']['type']} {store.manifest['search']['dim']}-d",
                highlight=False,
            )
            return
        if not compact:
            raise CoverIdError(
                f"give exactly one of --refs DIR or --metadata catalog.jsonl (the compact vectors of {out} are "
                "up to date)"
            )
        store.compact()  # a rewrite: its compact vectors are learned afresh too
        Console().print(
            f"[green]compacted[/] {out}: {store.size} references, {dead} deleted ones dropped", highlight=False
        )
        return
    settings = load_settings(
        {"encoder": encoder, "model": model, "pretrained": pretrained, "device": device, "threads": threads}
    )
    err = Console(stderr=True)
    report = build_index(
        out,
        refs=refs,
        metadata=metadata,
        settings=settings,
        projection_path=projection,
        rebuild=rebuild,
        show_progress=not quiet,
        workers=workers,
        ray_address=ray,
    )
    if compact:
        from cover_id.index.store import IndexStore

        IndexStore.open(out).compact()
    if report.notice:
        err.print(f"[yellow]note:[/] {report.notice}")
    console = Console()
    if report.skipped and not quiet:
        console.print(f"[yellow]skipped {len(report.skipped)}:[/]")
        for s in report.skipped:
            console.print(f"  {s.filename}: {s.reason}", markup=False, highlight=False)
    if report.duplicates and not quiet:
        console.print(f"[yellow]exact duplicates {len(report.duplicates)}:[/]")
        for a, b in report.duplicates:
            console.print(f"  {a} = {b}", markup=False, highlight=False)
    rate = f", {report.images_per_second:.1f} images/s" if report.embedded else ""
    console.print(
        f"[green]indexed {report.indexed}[/] references into {report.out} with '{report.encoder}' "
        f"(embedded {report.embedded}, reused {report.reused}, removed {report.removed}, "
        f"skipped {len(report.skipped)}, duplicates {len(report.duplicates)}) in {report.seconds:.1f}s{rate}",
        highlight=False,
    )
