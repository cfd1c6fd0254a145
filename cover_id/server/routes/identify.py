"""``/api/identify``, ``/api/search-by-image``, ``/api/search-by-text``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile

from cover_id.server.guards import UPLOAD_DOC, read_upload, require_multipart
from cover_id.server.schemas import IdentifyResult, ImageSearch, TextSearch, errors
from cover_id.server.state import ServerState, get_state, image_url, text_search_available

if TYPE_CHECKING:
    from cover_id.index.store import IndexStore

router = APIRouter(tags=["identify"])
State = Annotated[ServerState, Depends(get_state)]


@router.post(
    "/api/identify",
    summary="Which reference does this photo show?",
    dependencies=[Depends(require_multipart)],
    response_model=IdentifyResult,
    response_model_exclude_unset=True,
    responses=errors(400, 413, 415, 503),
)
async def identify(
    state: State,
    file: UploadFile = File(..., description=UPLOAD_DOC),
    multi: bool = Form(False, description="Report every recognised cover in the photo."),
    multi_q: bool | None = Query(None, alias="multi", description="Same as the form field."),
    session: str | None = Query(None, max_length=64, description="Also add the result to this scan session."),
) -> Any:
    """The same JSON object as `cover-id identify --json` prints for one photo (plus prices)."""
    state.check_busy()  # before the upload is read into memory
    data = await read_upload(state, file)
    want_multi = bool(multi or multi_q)
    name = file.filename or "upload"
    if session is not None:
        await anyio.to_thread.run_sync(state.sessions.get, session)  # 404 before the work, not after
    result = state.prices.annotate(
        state.public(await state.run(lambda: state.identifier.identify(data, name=name, multi=want_multi)))
    )
    if session is not None:
        entries = result.get("covers") if result.get("multi") else [result]
        for e in entries or []:
            item = await anyio.to_thread.run_sync(state.sessions.add_result, session, {"input": name, **e}, data)
            item["price"] = state.prices.lookup(item["record"]) if item["ref_id"] else None
            e["session_item"] = item
    return result


@router.post(
    "/api/search-by-image",
    summary="Nearest references by embedding",
    dependencies=[Depends(require_multipart)],
    response_model=ImageSearch,
    responses=errors(400, 413, 415, 503),
)
async def search_by_image(
    state: State,
    file: UploadFile = File(..., description=UPLOAD_DOC),
    k: int = Query(10, ge=1, le=50, description="How many references (1-50)."),
) -> Any:
    state.check_busy()
    data = await read_upload(state, file)
    t0 = time.perf_counter()
    store = state.identifier.store
    hits = await state.run(state.identifier.search_by_image, data, k)
    took = round((time.perf_counter() - t0) * 1000, 1)
    return {"input": file.filename, "k": k, "results": _hits(state, store, hits), "took_ms": took}


@router.get(
    "/api/search-by-text",
    summary="References matching a text (CLIP indexes)",
    response_model=TextSearch,
    responses=errors(400),
)
async def search_by_text(
    state: State,
    query: str = Query(..., min_length=1, max_length=500, description="What the cover shows, in words."),
    k: int = Query(10, ge=1, le=50, description="How many references (1-50)."),
) -> Any:
    ident = state.identifier
    if not text_search_available(ident):
        raise HTTPException(
            400,
            f"text search is not available: this index's encoder '{ident.encoder.name}' has no text tower "
            "(build the index with --encoder clip to search by text)",
        )
    t0 = time.perf_counter()
    store = ident.store
    hits = await state.run(ident.search_by_text, query, k)
    took = round((time.perf_counter() - t0) * 1000, 1)
    return {"query": query, "k": k, "results": _hits(state, store, hits), "took_ms": took}


def _hits(state: ServerState, store: IndexStore, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for h in hits:
        i = store.index_of(h["id"])
        out.append(state.public({**h, "image_url": image_url(store, i)} if i is not None else h))
    return out
