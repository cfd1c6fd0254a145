"""``cover-id serve``: the HTTP API and web page for one index."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.command()
def serve(
    index: Path = typer.Option(..., "--index", "-i", help="Index folder from `cover-id index`."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8500; 0 picks a free one)."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Photos processed at the same time (default: one per usable core). One process shares one "
        "index between that many threads, so collection changes are seen by all of them.",
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Key required by the write endpoints (or COVER_ID_API_KEY)."
    ),
    max_upload_mb: float | None = typer.Option(None, "--max-upload-mb", help="Largest accepted upload (default 10)."),
    cors_origin: list[str] | None = typer.Option(
        None, "--cors-origin", help="Allow browser pages from this origin (repeatable; '*' for any)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads per photo (default: cores / workers)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    prices: Path | None = typer.Option(
        None, "--prices", help='Price file: JSON keyed by id or set code, {"value": 12.5, "currency": "EUR"}.'
    ),
) -> None:
    """Serve the identify API, collection browsing/editing and the web page."""
    from cover_id.config import load_settings
    from cover_id.errors import CoverIdError

    settings = load_settings(
        {
            "host": host,
            "port": port,
            "workers": workers,
            "api_key": api_key,
            "max_upload_mb": max_upload_mb,
            "cors_origins": cors_origin or None,
            "threads": threads,
            "prices": str(prices) if prices else None,
        }
    )
    from cover_id.runtime import thread_count

    try:
        n_workers = thread_count(0) if settings["workers"] is None else int(settings["workers"])
        port_n = int(settings["port"])
        limit_mb = float(settings["max_upload_mb"])
    except (TypeError, ValueError):
        raise CoverIdError("workers, port and max_upload_mb must be numbers") from None
    if n_workers < 1:
        raise CoverIdError(f"--workers must be at least 1 (got {n_workers})")
    if not 0 <= port_n <= 65535:
        raise CoverIdError(f"--port must be 0-65535 (got {port_n})")
    if limit_mb <= 0:
        raise CoverIdError(f"--max-upload-mb must be positive (got {limit_mb:g})")
    if not settings.get("threads"):
        settings["threads"] = max(1, thread_count(0) // n_workers)  # nothing oversubscribes
    settings.update(workers=n_workers, port=port_n, max_upload_mb=limit_mb)
    if settings.get("api_key") is not None:
        settings["api_key"] = str(settings["api_key"])

    import uvicorn

    from cover_id.pipeline import Identifier
    from cover_id.server import bind_socket, create_app

    sock = bind_socket(str(settings["host"]), port_n)  # fail fast, before loading models
    try:
        identifier = Identifier.from_index(index, settings)
        application = create_app(identifier, index, settings)
    except BaseException:
        sock.close()
        raise
    h, p = sock.getsockname()[:2]
    shown = f"[{h}]" if ":" in h else h
    typer.echo(
        f"cover-id serve: {identifier.store.size} references, encoder {identifier.encoder.name}, "
        f"{n_workers} worker thread(s); http://{shown}:{p}/ (API docs at /docs)",
        err=True,
    )
    if not settings.get("api_key") and str(settings["host"]) not in LOOPBACK:
        typer.echo("warning: no --api-key: anyone who can reach this address can add and delete references", err=True)
    config = uvicorn.Config(application, log_level=log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
