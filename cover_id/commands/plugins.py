"""``cover-id plugins``: what is installed, without importing any of it."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)


@app.command()
def plugins() -> None:
    """List installed commands, encoders, detectors and re-rankers (and name clashes)."""
    from rich.console import Console
    from rich.table import Table

    from cover_id.plugins import GROUPS, available, clashes

    console = Console()
    table = Table("kind", "name", "provided by", "entry point")
    for kind in GROUPS:
        for name, ep in sorted(available(kind).items()):
            dist = ep.dist.name if ep.dist is not None else "?"
            table.add_row(kind[:-1], name, dist, ep.value)
    console.print(table)
    for kind in GROUPS:
        for name, lost in sorted(clashes(kind).items()):
            winner = available(kind)[name]
            for ep in lost:
                by = ep.dist.name if ep.dist is not None else "?"
                console.print(
                    f"clash: {kind[:-1]} '{name}' from {by} ({ep.value}) is ignored; '{name}' is {winner.value}",
                    markup=False,
                    highlight=False,
                )
