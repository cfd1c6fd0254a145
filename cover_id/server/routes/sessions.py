"""``/api/sessions`` (scan sessions: items, counts, undo, export) and ``/api/feedback`` (labelled examples).

Sessions and feedback live in ``INDEX.sessions.sqlite`` beside the index
(:mod:`cover_id.sessions`); they do not change the collection, so they need
no API key. A confirmed or corrected photo also becomes an extra view of its
item (:mod:`cover_id.teach`): that changes the collection, so when the server
has an API key it happens only for requests that carry it (the label is kept
either way). Item prices come from the price file or the catalog at read time.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from cover_id.server.collection import BadInput, NotFound
from cover_id.server.guards import UPLOAD_DOC, read_upload, require_multipart
from cover_id.server.schemas import Feedback, Session, SessionItem, SessionList, SessionSummary, Undo, errors
from cover_id.server.state import ServerState, get_state
from cover_id.sessions import ACTIONS, EXPORT_COLUMNS, SessionNotFound, export_rows, with_prices

router = APIRouter(tags=["sessions"])
State = Annotated[ServerState, Depends(get_state)]


class NewSession(BaseModel):
    name: str | None = Field(None, max_length=200, description="Default: the date and time.")


class FeedbackBody(BaseModel):
    """Feedback on a session item (its kept photo becomes the labelled example)."""

    action: Literal["confirm", "correct", "absent"]
    session: str = Field(max_length=64)
    item: int
    ref_id: str | None = Field(None, max_length=128, description="The right reference (action `correct`).")
    teach: bool = Field(True, description="Add the photo as an extra view of the right item (confirm, correct).")


def _full(state: ServerState, sid: str) -> dict[str, Any]:
    return with_prices(state.sessions.get(sid), state.prices)


async def _io(fn: Any, *args: Any) -> Any:
    """SQLite work off the event loop (it is quick, but a photo's thumbnail is decoded too)."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except SessionNotFound as exc:
        raise NotFound(str(exc)) from None


@router.post(
    "/api/sessions", summary="Start a scan session", status_code=201, response_model=Session, responses=errors(409)
)
async def create_session(state: State, body: NewSession | None = None) -> Any:
    s = await _io(state.sessions.create, body.name if body else None)
    return _full(state, s["id"])


@router.get("/api/sessions", summary="Every session, newest first", response_model=SessionList, responses=errors())
async def list_sessions(state: State) -> Any:
    return {"sessions": await _io(state.sessions.list)}


@router.get(
    "/api/sessions/{sid}", summary="A session with its items and total", response_model=Session, responses=errors(404)
)
async def get_session(state: State, sid: str) -> Any:
    return await _io(_full, state, sid)


@router.delete("/api/sessions/{sid}", summary="Delete a session", response_model=SessionSummary, responses=errors(404))
async def delete_session(state: State, sid: str) -> Any:
    s = await _io(_full, state, sid)
    await _io(state.sessions.delete, sid)
    return {k: v for k, v in s.items() if k not in ("items", "total")} | {"items": len(s["items"])}


@router.post(
    "/api/sessions/{sid}/items",
    summary="Add an identified photo (e.g. a live-camera frame) to a session",
    status_code=201,
    dependencies=[Depends(require_multipart)],
    response_model=SessionItem,
    responses=errors(400, 404, 413, 415),
)
async def add_item(
    state: State,
    sid: str,
    file: UploadFile = File(..., description=UPLOAD_DOC + " The photo: its thumbnail is kept."),
    ref_id: str | None = Form(None, max_length=128, description="The reference seen; empty: not identified."),
    decision: Literal["accept", "review", "reject"] = Form("accept"),
    geom_score: float | None = Form(None),
) -> Any:
    """To identify and add in one request, use `POST /api/identify?session=ID` instead."""
    data = await read_upload(state, file)
    match = None
    if ref_id:
        store, i = state.collection.find(ref_id)
        match = state.public(store.records[i])
    result = {
        "input": file.filename,
        "decision": decision if match else "reject",
        "match": match,
        "geom_score": geom_score,
    }
    item = await _io(state.sessions.add_result, sid, result, data)
    return _priced(state, item)


def _priced(state: ServerState, item: dict[str, Any]) -> dict[str, Any]:
    item["price"] = state.prices.lookup(item["record"]) if item["ref_id"] else None
    return item


@router.post(
    "/api/sessions/{sid}/undo", summary="Take back the last addition", response_model=Undo, responses=errors(404)
)
async def undo(state: State, sid: str) -> Any:
    item = await _io(state.sessions.undo, sid)
    return {"undone": _priced(state, item) if item else None, "session": await _io(_full, state, sid)}


@router.delete(
    "/api/sessions/{sid}/items/{item_id}",
    summary="Remove an item (whatever its count)",
    response_model=Session,
    responses=errors(404),
)
async def remove_item(state: State, sid: str, item_id: int) -> Any:
    await _io(state.sessions.remove, sid, item_id)
    return await _io(_full, state, sid)


@router.get(
    "/api/sessions/{sid}/items/{item_id}/thumb",
    summary="An item's photo thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **errors(404)},
)
async def item_thumb(state: State, sid: str, item_id: int) -> Response:
    data = await _io(state.sessions.blob, sid, item_id, "thumb")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/api/sessions/{sid}/export",
    summary="Export a session as CSV or JSON",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}, **errors(404)},
)
async def export_session(
    state: State, sid: str, format: Literal["csv", "json"] = Query("csv", description="csv or json.")
) -> Response:
    s = await _io(_full, state, sid)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in s["name"])[:60] or "session"
    if format == "json":
        body = json.dumps({**s, "rows": export_rows(s)}, ensure_ascii=False, indent=1)
        media = "application/json"
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, EXPORT_COLUMNS)
        w.writeheader()
        w.writerows(export_rows(s))
        total = s["total"]["by_currency"]
        for cur, value in total.items():
            w.writerow({"name": f"TOTAL {cur}".strip(), "price": value, "currency": cur, "count": s["count"]})
        body, media = buf.getvalue(), "text/csv"
    return Response(
        body,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stem}.{format}"'},
    )


# ---- feedback --------------------------------------------------------------------------------------------
@router.post(
    "/api/feedback",
    summary="Confirm or correct a result",
    status_code=201,
    response_model=Feedback,
    responses=errors(400, 404, 413, 415),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": FeedbackBody.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["action", "file"],
                        "properties": {
                            "action": {"type": "string", "enum": list(ACTIONS)},
                            "ref_id": {"type": "string"},
                            "predicted_id": {"type": "string"},
                            "decision": {"type": "string"},
                            "teach": {"type": "boolean", "default": True},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                },
            }
        }
    },
)
async def feedback(state: State, request: Request) -> Any:
    """`confirm` the result, `correct` it to another reference (`ref_id`), or say it is `absent` (not in
    my collection). JSON `{action, session, item, ref_id}` labels a session item (its kept photo is the
    example, and the item itself is corrected); a multipart form with `file` (+ `action`, `ref_id`,
    `predicted_id`, `decision`) labels a photo of its own. Every label is kept as a labelled example."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("application/json"):
        try:
            body = FeedbackBody.model_validate(await request.json())
        except ValidationError as exc:
            parts = [f"field '{'.'.join(map(str, e['loc'])) or 'body'}': {e['msg']}" for e in exc.errors()]
            raise BadInput("feedback body: " + "; ".join(parts)) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput(f"feedback body is not valid JSON ({str(exc).splitlines()[0][:100]})") from None
        return await _item_feedback(state, body, _may_change(request))
    if not ctype.startswith("multipart/form-data"):
        raise BadInput("send feedback as JSON {action, session, item, ref_id} or as a multipart form with a file")
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) and not hasattr(upload, "read"):
        raise BadInput("form field 'file' (the photo) is missing")
    data = await read_upload(state, upload)  # type: ignore[arg-type]
    action = str(form.get("action") or "")
    truth = _truth(state, action, str(form.get("ref_id") or "") or None, str(form.get("predicted_id") or "") or None)
    kept = _as_jpeg(data)
    out = await _io(
        lambda: state.sessions.add_feedback(
            action,
            truth,
            kept,
            predicted=str(form.get("predicted_id") or "") or None,
            decision=str(form.get("decision") or "") or None,
            input_name=getattr(upload, "filename", None),
        )
    )
    wanted = str(form.get("teach") or "true").strip().lower() not in ("0", "false", "no", "off")
    return {**out, **await _teach(state, action, truth, kept, wanted, _may_change(request))}


def _may_change(request: Request) -> bool:
    """Whether the request may change the collection (it carries the API key, or none is set)."""
    from fastapi import HTTPException

    from cover_id.server.guards import check_key

    try:
        check_key(request)
    except HTTPException:
        return False
    return True


async def _teach(state: ServerState, action: str, truth: str, photo: bytes, wanted: bool, allowed: bool) -> dict:
    """Add the labelled photo's rectified cover as an extra view of ``truth`` (confirm and correct only)."""
    from cover_id.teach import rectify_for

    if action == "absent" or not truth:
        return {"view": None, "taught": "no: not in the collection"}
    if not wanted:
        return {"view": None, "taught": "no: not asked to"}
    if not allowed:
        return {"view": None, "taught": "no: adding a view changes the collection and needs the API key"}

    def work() -> dict:
        store, row = state.collection.find(truth)
        found, why = rectify_for(state.identifier, store, photo, row)
        if found is None:
            return {"view": None, "taught": f"no: {why}"}
        record = state.collection.add_view(truth, found.image, "feedback", view_how=found.how)
        return {"view": {"id": record["id"], "how": found.how, "inliers": found.inliers}, "taught": "yes"}

    return await state.run(work)


def _truth(state: ServerState, action: str, ref_id: str | None, predicted: str | None) -> str:
    """The reference id a label names ("" for absent); 404 when it is not in the collection."""
    if action not in ACTIONS:
        raise BadInput(f"action must be one of {', '.join(ACTIONS)} (got '{action}')")
    if action == "absent":
        return ""
    ref = ref_id if action == "correct" else (ref_id or predicted)
    if not ref:
        raise BadInput("say which reference is right: ref_id" + (" (or predicted_id)" if action == "confirm" else ""))
    state.collection.find(ref)
    return ref


def _as_jpeg(data: bytes) -> bytes:
    """An upload as the JPEG kept for the labelled example (at most 1280 px; unreadable: 400)."""
    from cover_id.errors import ImageError
    from cover_id.sessions import thumb_and_photo

    _, kept = thumb_and_photo(data)
    if kept is None:
        from cover_id.imageio import read_image

        read_image(data, max_side=64)  # the reader's own one-line error
        raise ImageError("uploaded image: cannot be read")
    return kept


async def _item_feedback(state: ServerState, body: FeedbackBody, allowed: bool) -> Any:
    item = await _io(state.sessions.item, body.session, body.item)
    truth = _truth(state, body.action, body.ref_id, item["ref_id"])
    record = None
    if body.action == "correct":
        store, i = state.collection.find(truth)
        record = state.public(store.records[i])
    photo = await _io(state.sessions.blob, body.session, body.item, "photo")
    await _io(state.sessions.correct, body.session, body.item, body.action, record)
    out = await _io(
        lambda: state.sessions.add_feedback(
            body.action,
            truth,
            photo,
            predicted=item["ref_id"],
            decision=item["decision"],
            session_id=body.session,
            item_id=body.item,
            input_name=item["input"],
        )
    )
    return {**out, **await _teach(state, body.action, truth, photo, body.teach, allowed)}


@router.get(
    "/api/feedback/export",
    summary="Labelled examples as a zip: truth.csv + photos/",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, **errors()},
)
async def export_feedback(state: State) -> Response:
    """Unzip it and run `cover-id verify --index INDEX --queries truth.csv --calibrate`."""

    def build() -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            state.sessions.export_feedback(Path(tmp))
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
                for p in sorted(Path(tmp).rglob("*")):
                    if p.is_file():
                        z.write(p, p.relative_to(tmp).as_posix())
            return buf.getvalue()

    data = await anyio.to_thread.run_sync(build)
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": 'attachment; filename="feedback.zip"'}
    )
