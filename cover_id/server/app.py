"""The FastAPI application: identify, search, browse and change the collection, plus the web page.

Design:

* One process holds one index and one set of models. CPU work (identify,
  search, embedding a new reference) runs in worker threads, at most
  ``workers`` at a time; the libraries involved release the GIL, so threads
  give real parallelism without copying the index per process.
* Writes are copy-on-write under a lock (see :mod:`cover_id.server.collection`).
* The endpoints live in :mod:`cover_id.server.routes`, their answers are the
  pydantic models of :mod:`cover_id.server.schemas`, the checks that run first
  (API key, upload form) in :mod:`cover_id.server.guards`.
* Every error is JSON ``{"detail": "message"}`` with a fitting status code; no
  message names a server path, and a 500 says only "internal error" (the
  details go to the server log).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from cover_id import __version__
from cover_id.errors import CoverIdError
from cover_id.server.collection import BadInput, Collection, Conflict, NotFound, make_thread_safe
from cover_id.server.limits import Metrics, UploadLimit
from cover_id.server.routes import collection, identify, service, sessions
from cover_id.server.state import ServerState, strip_paths
from cover_id.sessions import SessionConflict, SessionNotFound

if TYPE_CHECKING:
    from cover_id.pipeline import Identifier

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
log = logging.getLogger("cover_id.server")


def create_app(
    identifier: Identifier,
    index_path: Path,
    settings: dict[str, Any] | None = None,
    added_dir: Path | None = None,
) -> FastAPI:
    """The service for one loaded index (``settings``: workers, api_key, max_upload_mb, cors_origins)."""
    settings = dict(settings or {})
    make_thread_safe(identifier)
    state = ServerState(Collection(identifier, index_path, added_dir), settings)

    app = FastAPI(
        title="cover-id",
        version=__version__,
        description=(
            "Identify which reference cover a photo shows, search and change the collection. "
            "Write endpoints need the API key (header `X-API-Key` or `Authorization: Bearer`) when one is set."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.cover = state
    _docs(app)
    _error_handlers(app)
    for router in (service.router, identify.router, collection.router, collection.writes, sessions.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    _middleware(app, state, settings)
    return app


# ---- errors ------------------------------------------------------------------------------
def _status(exc: CoverIdError) -> int:
    if isinstance(exc, NotFound | SessionNotFound):
        return 404
    if isinstance(exc, Conflict | SessionConflict):
        return 409
    if isinstance(exc, BadInput):
        return 422
    return 400


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # ctx can hold exception objects and their raw text: leave it out.
        raw = [{k: v for k, v in e.items() if k != "ctx"} for e in exc.errors()]
        errors = jsonable_encoder(raw, custom_encoder={bytes: lambda b: f"<{len(b)} bytes>"})
        return JSONResponse({"detail": validation_message(errors), "errors": errors}, status_code=422)

    @app.exception_handler(CoverIdError)
    async def on_cover_error(request: Request, exc: CoverIdError) -> JSONResponse:
        return JSONResponse({"detail": strip_paths(str(exc))}, status_code=_status(exc))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line naming every invalid parameter."""
    kinds = {"query": "query parameter", "path": "path parameter", "body": "form field", "header": "header"}
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        where = loc[0] if loc else ""
        name = ".".join(loc[1:]) or where or "request"
        msg = str(e.get("msg", "invalid"))
        got = e.get("input")
        if e.get("type") != "missing" and isinstance(got, (str, int, float)) and len(str(got)) <= 40:
            msg += f" (got {got!r})"
        parts.append(f"{kinds.get(where, 'parameter')} '{name}': {msg}")
    return strip_paths("; ".join(parts)) or "invalid request"


# ---- docs and middleware -------------------------------------------------------------------
def _docs(app: FastAPI) -> None:
    """Swagger UI at /docs, from a locally installed bundle when there is one (no CDN needed)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    assets = _swagger_assets()
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        if assets is None:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="cover-id API")
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="cover-id API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def _swagger_assets() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    assets = Path(str(swagger_ui_path))
    return assets if (assets / "swagger-ui-bundle.js").is_file() else None


def _middleware(app: FastAPI, state: ServerState, settings: dict[str, Any]) -> None:
    # Outermost first: CORS answers pre-flights, the limit guards every body, metrics time it all.
    app.add_middleware(UploadLimit, max_bytes=state.max_upload)
    origins = settings.get("cors_origins") or []
    if isinstance(origins, str):
        origins = [o.strip() for o in origins.split(",") if o.strip()]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
            max_age=600,
        )
    app.add_middleware(Metrics, state=state)
