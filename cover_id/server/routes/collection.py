"""``/api/refs`` (browse, add, delete, images) and ``/api/stats``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from cover_id.server.collection import BadInput, NotFound
from cover_id.server.guards import UPLOAD_DOC, KeyCheckedRoute, read_upload, require_multipart
from cover_id.server.schemas import (
    AddedReference,
    Deleted,
    ReferenceDetail,
    ReferencePage,
    Stats,
    errors,
)
from cover_id.server.state import ServerState, get_state, image_sha, strip_paths

router = APIRouter(tags=["collection"])
# Writes check the API key before their body is read (see guards.KeyCheckedRoute).
writes = APIRouter(tags=["collection"], route_class=KeyCheckedRoute)
State = Annotated[ServerState, Depends(get_state)]


@router.get("/api/refs", summary="Paged list of references", response_model=ReferencePage, responses=errors())
async def list_refs(
    state: State,
    offset: int = Query(0, ge=0, description="Skip this many."),
    limit: int = Query(50, ge=1, le=500, description="At most this many (1-500)."),
    q: str | None = Query(None, max_length=200, description="Words that must all start a word of id, name or a field."),
    sort: Literal["price"] | None = Query(None, description="`price`: most valuable first (unpriced last)."),
) -> Any:
    if sort == "price":
        store, rows, total = state.collection.listing(0, 1 << 62, q)
        items = sorted((state.record(store, i) for i in rows), key=_by_price)[offset : offset + limit]
    else:
        store, rows, total = state.collection.listing(offset, limit, q)
        items = [state.record(store, i) for i in rows]
    return {"total": total, "offset": offset, "limit": limit, "q": q, "sort": sort, "items": items}


class SearchHits(BaseModel):
    query: str
    text_tower: bool = Field(description="Whether picture hits (`via: image`, CLIP text-to-image) were looked for.")
    items: list[dict[str, Any]] = Field(
        description="Catalog matches first (`via: catalog`: every word starts a word of a field), then, with a "
        "text tower, the references whose pictures fit the words best (`via: image`, with `cosine`); each item once."
    )


@router.get(
    "/api/search", summary="Text search: catalog fields, then pictures", response_model=SearchHits, responses=errors()
)
async def search(
    state: State,
    q: str = Query(..., min_length=1, max_length=200, description="Words, e.g. a name, an artist, a set code."),
    k: int = Query(10, ge=1, le=100, description="At most this many of each kind."),
) -> Any:
    """Every encoder: the catalog's string fields (SQLite FTS5). Encoders with a text tower (clip) add
    text-to-image hits below them."""
    from cover_id.server.collection import item_rows
    from cover_id.server.state import text_search_available

    ident = state.identifier
    store = ident.store
    rows = item_rows(store, store.text_search(q, 4 * k + 20))[:k]  # room for items with several views
    items = [{**state.record(store, i), "via": "catalog"} for i in rows]
    tower = text_search_available(ident)
    if tower:
        seen = {x["id"] for x in items}
        for hit in await state.run(ident.search_by_text, q, k):
            if hit["id"] not in seen:
                i = store.index_of(hit["id"])
                if i is not None:
                    seen.add(hit["id"])
                    items.append({**state.record(store, i), "cosine": hit["cosine"], "via": "image"})
    return {"query": q, "text_tower": tower, "items": items}


def _by_price(item: dict[str, Any]) -> tuple[int, float, str]:
    price = item.get("price")  # the looked-up object; a catalog's non-numeric price text counts as none
    return (0, -price["value"], item["id"]) if isinstance(price, dict) else (1, 0.0, item["id"])


@router.get("/api/refs/{ref_id}", summary="One reference", response_model=ReferenceDetail, responses=errors(404))
async def get_ref(state: State, ref_id: str) -> Any:
    store, i = state.collection.find(ref_id)
    extra: dict[str, Any] = {"added_via_api": state.collection.is_added(store, i)}
    rec = store.records[i]
    if store.has_views and rec.get("item") in (None, rec["id"]):
        views = [store.records[r]["id"] for r in store.views_of(rec["id"]) if r != i]
        if views:
            extra["views"] = views  # the item's other images (GET /api/refs/{view}/image shows each)
    return state.record(store, i, extra)


@router.get(
    "/api/refs/{ref_id}/image",
    summary="A reference's image (or a thumbnail)",
    responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified"}, **errors(404)},
)
async def ref_image(
    state: State,
    request: Request,
    ref_id: str,
    size: int | None = Query(None, ge=16, le=2048, description="Longest side of a JPEG thumbnail."),
    v: str | None = Query(None, max_length=64, description="Version from image_url; makes the answer cacheable."),
) -> Response:
    store, i = state.collection.find(ref_id)
    path = store.image_path(i)
    sha = image_sha(store, i)
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


@writes.post(
    "/api/refs",
    summary="Add a reference",
    status_code=201,
    dependencies=[Depends(require_multipart)],
    response_model=AddedReference,
    responses=errors(400, 401, 409, 413, 415),
)
async def add_ref(
    state: State,
    file: UploadFile = File(..., description=UPLOAD_DOC),
    name: str | None = Form(None, max_length=300, description="Display name (default: from the file name)."),
    id: str | None = Form(None, max_length=128, description="Id (default: made from the name)."),
    metadata: str | None = Form(None, description='Catalog fields as a JSON object, e.g. {"year": 1999}.'),
) -> Any:
    """Embed the image and add it; the index on disk is updated atomically before the answer."""
    from cover_id.index.catalog import parse_label

    fields: dict[str, Any] = {}
    if metadata:
        try:
            fields = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise BadInput(f"metadata is not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(fields, dict):
            raise BadInput("metadata must be a JSON object of field: value")
    data = await read_upload(state, file)
    label = name or (parse_label(Path(file.filename).stem)["name"] if file.filename else "")
    if not label:
        raise BadInput("give a name for the new reference")
    record = await state.run(state.collection.add, data, label, id or None, fields)
    store, i = state.collection.find(record["id"])
    return {**state.record(store, i), "references": store.size}


@writes.delete("/api/refs/{ref_id}", summary="Remove a reference", response_model=Deleted, responses=errors(401, 404))
async def delete_ref(state: State, ref_id: str) -> Any:
    record = await anyio.to_thread.run_sync(state.collection.remove, ref_id)
    return {"deleted": state.public(record), "references": state.identifier.store.size}


@router.get("/api/stats", summary="Counts and metadata field summaries", response_model=Stats, responses=errors())
async def stats(state: State) -> Any:
    return strip_paths(await anyio.to_thread.run_sync(state.collection.stats))
