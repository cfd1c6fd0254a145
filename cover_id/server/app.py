"""The FastAPI application: identify, search, browse and change the collection, plus the web page.

Design:

* One process holds one index and one set of models. CPU work (identify,
  search, embedding a new reference) runs in worker threads, at most
  ``workers`` at a time; the libraries involved release the GIL, so threads
  give real parallelism without copying the index per process.
* Writes are copy-on-write under a lock (see :mod:`cover_id.server.collection`).
* Every error is JSON ``{"detail": "message"}`` with a fitting status code.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from cover_id import __version__
from cover_id.errors import CoverIdError, ImageError
from cover_id.server.collection import BadInput, Collection, Conflict, NotFound, make_thread_safe
from cover_id.server.limits import ALLOWED_TYPES, Metrics, UploadLimit, check_upload

if TYPE_CHECKING:
    from cover_id.index_store import IndexStore
    from cover_id.pipeline import Identifier

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
THUMB_CACHE = 512


class ServerState:
    """What the endpoints share: the collection, limits, counters."""

    def __init__(self, collection: Collection, settings: dict[str, Any]) -> None:
        self.collection = collection
        self.settings = settings
        self.workers = max(1, int(settings.get("workers") or 1))
        self.api_key: str | None = settings.get("api_key") or None
        self.max_upload = int(float(settings.get("max_upload_mb") or 10) * 1024 * 1024)
        self.started = time.time()
        self.requests = 0
        self.last_ms: float | None = None
        self.compute = anyio.CapacityLimiter(self.workers)
        self._thumbs: OrderedDict[tuple, bytes] = OrderedDict()
        self._thumb_lock = threading.Lock()

    @property
    def identifier(self) -> "Identifier":
        return self.collection.identifier

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run CPU work in a worker thread, at most ``workers`` at once."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.compute)

    def thumbnail(self, path: Path, key: str, size: int) -> bytes:
        import cv2

        from cover_id.imageio import read_image

        cache_key = (str(path), key, size)
        with self._thumb_lock:
            if cache_key in self._thumbs:
                self._thumbs.move_to_end(cache_key)
                return self._thumbs[cache_key]
        ok, buf = cv2.imencode(".jpg", read_image(path, max_side=size), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise ImageError(f"{path.name}: cannot make a thumbnail")
        data = buf.tobytes()
        with self._thumb_lock:
            self._thumbs[cache_key] = data
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return data


def _sha(store: "IndexStore", i: int) -> str | None:
    return store.manifest.get("files", {}).get(store.records[i]["filename"])


def image_url(store: "IndexStore", i: int) -> str:
    sha = _sha(store, i)
    url = f"/api/refs/{quote(store.records[i]['id'], safe='')}/image"
    return f"{url}?v={sha[:12]}" if sha else url


def _with_image(store: "IndexStore", i: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**store.records[i], **(extra or {}), "image_url": image_url(store, i)}


def _validation_message(errors: list[dict[str, Any]]) -> str:
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
    return "; ".join(parts) or "invalid request"


def _offline_docs(app: FastAPI) -> bool:
    """Serve Swagger UI from a locally installed bundle when there is one (no CDN needed)."""
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-not-found]
    except ImportError:
        return False
    from fastapi.openapi.docs import get_swagger_ui_html

    assets = Path(str(swagger_ui_path))
    if not (assets / "swagger-ui-bundle.js").is_file():
        return False
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="cover-id API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    return True


def create_app(
    identifier: "Identifier",
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
    if not _offline_docs(app):
        from fastapi.openapi.docs import get_swagger_ui_html

        @app.get("/docs", include_in_schema=False)
        async def docs_cdn() -> Response:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="cover-id API")

    # ---- errors ------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str, bytes: lambda b: f"<{len(b)} bytes>"})
        return JSONResponse({"detail": _validation_message(errors), "errors": errors}, status_code=422)

    @app.exception_handler(CoverIdError)
    async def on_cover_error(request: Request, exc: CoverIdError) -> JSONResponse:
        status = 400
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, Conflict):
            status = 409
        elif isinstance(exc, BadInput):
            status = 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    # ---- shared dependencies -------------------------------------------------------
    def require_key(request: Request) -> None:
        if state.api_key is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            raise HTTPException(401, "this endpoint needs the API key: send it as header X-API-Key", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), state.api_key.encode()):
            raise HTTPException(401, "wrong API key", {"WWW-Authenticate": "Bearer"})

    def require_multipart(request: Request) -> None:
        ctype = request.headers.get("content-type", "").lower()
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(
                415, f"send the image as multipart/form-data with a 'file' field, not '{ctype or 'no content type'}'"
            )

    async def read_upload(file: UploadFile) -> bytes:
        check_upload(file.content_type, file.filename)
        data = await file.read()
        if len(data) > state.max_upload:
            raise HTTPException(413, f"upload too large: {len(data) / 1e6:.1f} MB (limit {state.max_upload / 1048576:g} MB)")
        if not data:
            raise ImageError(f"{file.filename or 'uploaded image'}: empty file (0 bytes)")
        return data

    upload_doc = f"An image: {', '.join(sorted({t.split('/')[1] for t in ALLOWED_TYPES}))}."

    # ---- service -------------------------------------------------------------------
    @app.get("/health", tags=["service"], summary="Status, index, encoder, counters")
    async def health() -> dict[str, Any]:
        ident = state.identifier
        store = ident.store
        from dataclasses import asdict

        return {
            "status": "ok",
            "version": __version__,
            "index": {"path": str(state.collection.index_path), "size": store.size, "updated": store.manifest.get("updated")},
            "encoder": {"name": ident.encoder.name, "spec": store.encoder_spec},
            "text_search": hasattr(ident.encoder, "encode_text"),
            "projection": store.manifest.get("projection"),
            "calibration": {
                "source": ident.threshold_source(),
                "thresholds": jsonable_encoder(asdict(ident.thresholds)),
                "index": store.manifest.get("calibration"),
            },
            "uptime_s": round(time.time() - state.started, 1),
            "requests": state.requests,
            "last_response_ms": state.last_ms,
            "workers": state.workers,
            "writes": {"api_key_required": state.api_key is not None, "since_start": state.collection.writes},
            "max_upload_mb": state.max_upload / 1048576,
        }

    # ---- identify and search -----------------------------------------------------------
    @app.post("/api/identify", tags=["identify"], summary="Which reference does this photo show?",
              dependencies=[Depends(require_multipart)])  # fmt: skip
    async def identify(
        file: UploadFile = File(..., description=upload_doc),
        multi: bool = Form(False, description="Report every recognised cover in the photo."),
        multi_q: Optional[bool] = Query(None, alias="multi", description="Same as the form field."),
    ) -> dict[str, Any]:
        """The same JSON object as `cover-id identify --json` prints for one photo."""
        data = await read_upload(file)
        want_multi = bool(multi or multi_q)
        return await state.run(lambda: state.identifier.identify(data, name=file.filename or "upload", multi=want_multi))

    @app.post("/api/search-by-image", tags=["identify"], summary="Nearest references by embedding",
              dependencies=[Depends(require_multipart)])  # fmt: skip
    async def search_by_image(
        file: UploadFile = File(..., description=upload_doc),
        k: int = Query(10, ge=1, le=50, description="How many references (1-50)."),
    ) -> dict[str, Any]:
        data = await read_upload(file)
        t0 = time.perf_counter()
        store = state.identifier.store
        hits = await state.run(state.identifier.search_by_image, data, k)
        return {"input": file.filename, "k": k, "results": _hits(store, hits), "took_ms": round((time.perf_counter() - t0) * 1000, 1)}

    @app.get("/api/search-by-text", tags=["identify"], summary="References matching a text (CLIP indexes)")
    async def search_by_text(
        query: str = Query(..., min_length=1, max_length=500, description="What the cover shows, in words."),
        k: int = Query(10, ge=1, le=50, description="How many references (1-50)."),
    ) -> dict[str, Any]:
        ident = state.identifier
        if not hasattr(ident.encoder, "encode_text"):
            raise HTTPException(
                400,
                f"text search is not available: this index's encoder '{ident.encoder.name}' has no text tower "
                "(build the index with --encoder clip to search by text)",
            )
        t0 = time.perf_counter()
        store = ident.store
        hits = await state.run(ident.search_by_text, query, k)
        return {"query": query, "k": k, "results": _hits(store, hits), "took_ms": round((time.perf_counter() - t0) * 1000, 1)}

    def _hits(store: "IndexStore", hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for h in hits:
            i = store.index_of(h["id"])
            out.append({**h, "image_url": image_url(store, i)} if i is not None else h)
        return out

    # ---- the collection ------------------------------------------------------------------
    @app.get("/api/refs", tags=["collection"], summary="Paged list of references")
    async def list_refs(
        offset: int = Query(0, ge=0, description="Skip this many."),
        limit: int = Query(50, ge=1, le=500, description="At most this many (1-500)."),
        q: Optional[str] = Query(None, max_length=200, description="Words that must all appear in id, name or a field."),
    ) -> dict[str, Any]:
        store, rows, total = state.collection.listing(offset, limit, q)
        return {"total": total, "offset": offset, "limit": limit, "q": q, "items": [_with_image(store, i) for i in rows]}

    @app.get("/api/refs/{ref_id}", tags=["collection"], summary="One reference")
    async def get_ref(ref_id: str) -> dict[str, Any]:
        store, i = state.collection.find(ref_id)
        return _with_image(store, i, {"added_via_api": state.collection.is_added(store, i)})

    @app.get("/api/refs/{ref_id}/image", tags=["collection"], summary="A reference's image (or a thumbnail)",
             responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified"}})  # fmt: skip
    async def ref_image(
        request: Request,
        ref_id: str,
        size: Optional[int] = Query(None, ge=16, le=2048, description="Longest side of a JPEG thumbnail."),
        v: Optional[str] = Query(None, max_length=64, description="Version from image_url; makes the answer cacheable for long."),
    ) -> Response:
        store, i = state.collection.find(ref_id)
        path = store.image_path(i)
        sha = _sha(store, i)
        if sha is None:
            try:
                st = path.stat()
                sha = f"{int(st.st_mtime_ns)}-{st.st_size}"
            except OSError:
                sha = None
        etag = f'"{sha[:24]}-{size or 0}"' if sha else None
        long_lived = bool(v and sha and sha.startswith(v))
        headers = {"Cache-Control": "public, max-age=31536000, immutable" if long_lived else "public, max-age=300"}
        if etag:
            headers["ETag"] = etag
            if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
                return Response(status_code=304, headers=headers)
        if not path.is_file():
            raise NotFound(f"the image file of reference '{ref_id}' is missing on the server")
        if size:
            data = await anyio.to_thread.run_sync(state.thumbnail, path, sha or "", size)
            return Response(data, media_type="image/jpeg", headers=headers)
        return FileResponse(path, headers=headers)

    @app.post("/api/refs", tags=["collection"], summary="Add a reference", status_code=201,
              dependencies=[Depends(require_key), Depends(require_multipart)])  # fmt: skip
    async def add_ref(
        file: UploadFile = File(..., description=upload_doc),
        name: Optional[str] = Form(None, max_length=300, description="Display name (default: from the file name)."),
        id: Optional[str] = Form(None, max_length=128, description="Id (default: made from the name)."),
        metadata: Optional[str] = Form(None, description='Catalog fields as a JSON object, e.g. {"year": 1999}.'),
    ) -> dict[str, Any]:
        """Embed the image and add it; the index on disk is updated atomically before the answer."""
        from cover_id.catalog import parse_label

        fields: dict[str, Any] = {}
        if metadata:
            try:
                fields = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise BadInput(f"metadata is not valid JSON ({exc.msg})") from None
            if not isinstance(fields, dict):
                raise BadInput("metadata must be a JSON object of field: value")
        data = await read_upload(file)
        label = name or (parse_label(Path(file.filename).stem)["name"] if file.filename else "")
        if not label:
            raise BadInput("give a name for the new reference")
        record = await state.run(state.collection.add, data, label, id or None, fields)
        store, i = state.collection.find(record["id"])
        return {**_with_image(store, i), "references": store.size}

    @app.delete("/api/refs/{ref_id}", tags=["collection"], summary="Remove a reference",
                dependencies=[Depends(require_key)])  # fmt: skip
    async def delete_ref(ref_id: str) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(state.collection.remove, ref_id)
        return {"deleted": record, "references": state.identifier.store.size}

    @app.get("/api/stats", tags=["collection"], summary="Counts and metadata field summaries")
    async def stats() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(state.collection.stats)

    # ---- the web page -------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

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
    return app
