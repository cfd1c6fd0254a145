"""``cover-id plugins``: what is installed, without importing any of it."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)


@app.command()
def plugins() -> None:
    """List installed commands, encoders, detectors and re-rankers."""
    from rich.console import Console
    from rich.table import Table

    from cover_id.plugins import GROUPS, available

    table = Table("kind", "name", "provided by", "entry point")
    for kind in GROUPS:
        for name, ep in sorted(available(kind).items()):
            dist = ep.dist.name if ep.dist is not None else "?"
            table.add_row(kind[:-1], name, dist, ep.value)
    Console().print(table)
