"""`cover-id verify` (not built yet)."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify() -> None:
    """Not built yet."""
    from cover_id.errors import CoverIdError

    raise CoverIdError("'cover-id verify' is not built yet in this version")
