"""``cover-id train``: a projection head that separates the references better."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


@app.command()
def train(
    out: Path = typer.Option(..., "--out", "-o", help="Head file to write: a numpy .npz archive (e.g. head.npz)."),
    refs: Path | None = typer.Option(None, "--refs", help="Folder of reference images."),
    index: Path | None = typer.Option(None, "--index", "-i", help="Train on an index's references and encoder."),
    epochs: int = typer.Option(20, "--epochs", help="Passes over the references."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (AdamW, cosine decay)."),
    k: int = typer.Option(16, "--k", "-K", help="Classes (references) per batch."),
    m: int = typer.Option(4, "--m", "-M", help="Views per class in a batch (the clean reference is one of them)."),
    bank_views: int = typer.Option(6, "--bank-views", help="Augmented views encoded per reference (the slow part)."),
    holdout: int = typer.Option(
        2, "--holdout", help="Photo-like views per reference kept aside (before/after margins, epoch choice)."
    ),
    keep_last: bool = typer.Option(
        False, "--keep-last", help="Keep the last epoch instead of the one best on held-out views."
    ),
    hidden: int = typer.Option(256, "--hidden", help="Hidden units of the head."),
    temperature: float = typer.Option(0.1, "--temperature", help="SupCon temperature."),
    seed: int = typer.Option(0, "--seed", help="Random seed (views, batches, initial weights)."),
    device: str = typer.Option("cpu", "--device", help="torch device for training (cpu, cuda)."),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help="With --refs: auto (default), clip or local."),
    model: str | None = typer.Option(None, "--model", help="With --refs: open_clip model name."),
    pretrained: str | None = typer.Option(None, "--pretrained", help="With --refs: CLIP weights."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a small head with supervised contrastive loss on the frozen encoder's features.

    Apply it with `cover-id index --refs DIR --out INDEX --projection head.npz`
    (an existing index is re-projected without re-embedding).
    """
    import sys

    from rich.console import Console
    from rich.table import Table

    from cover_id.config import load_settings
    from cover_id.training import TrainConfig
    from cover_id.training import train as run_train

    settings = load_settings(
        {"encoder": encoder, "model": model, "pretrained": pretrained, "threads": threads, "device": device}
    )
    cfg = TrainConfig(
        epochs=epochs,
        lr=lr,
        k=k,
        m=m,
        views=bank_views,
        holdout=holdout,
        hidden=hidden,
        temperature=temperature,
        seed=seed,
        device=device,
        keep_best=not keep_last,
    )
    console = Console()
    result = run_train(
        out, refs=refs, index=index, cfg=cfg, settings=settings, show_progress=not quiet and sys.stderr.isatty()
    )
    proj = result.projection
    if result.interrupted:
        console.print(f"[yellow]interrupted after {result.epochs_done} epoch(s): saved the head as it was[/]")
    b, a = result.before, result.after
    if b.get("n"):
        t = Table(title=f"held-out photo-like views ({b['n']}): cosine margin = own reference - best other")
        for col in ("", "median margin", "10th pct", "top-1"):
            t.add_column(col, justify="right")
        t.add_row("before (encoder)", f"{b['median']:+.3f}", f"{b['p10']:+.3f}", f"{b['top1']:.1%}")
        if a.get("n"):
            t.add_row("after (head)", f"{a['median']:+.3f}", f"{a['p10']:+.3f}", f"{a['top1']:.1%}")
        console.print(t)
    loss = f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, " if result.losses else ""
    if cfg.keep_best and result.kept_epoch != result.epochs_done:
        loss += f"kept epoch {result.kept_epoch} (best on held-out views; 0 = the encoder unchanged), "
    console.print(
        f"[green]saved[/] {out}: head {proj.in_dim} -> {proj.out_dim} for encoder '{proj.encoder.get('name')}' "
        f"({loss}{result.epochs_done} epochs in {result.seconds:.1f}s, views encoded in {proj.meta.get('bank_seconds')}s)",
        highlight=False,
    )
    if cfg.keep_best and result.kept_epoch == 0 and result.epochs_done:
        console.print(
            "[yellow]note:[/] no epoch beat the encoder on the held-out views, so the saved head leaves vectors "
            "unchanged; try more --bank-views, a lower --lr, or --keep-last to keep the trained one anyway"
        )
    if index is not None:
        from cover_id.index.store import IndexStore

        src = IndexStore.open(index).manifest.get("source") or {}
        flag = "--metadata" if src.get("type") == "metadata" else "--refs"
        console.print(
            f"apply it: cover-id index {flag} {src.get('path', 'DIR')} --out {index} --projection {out}",
            highlight=False,
        )
    else:
        console.print(f"apply it: cover-id index --refs {refs} --out INDEX --projection {out}", highlight=False)
