"""Response bodies of the HTTP API, as pydantic models: ``/docs`` documents every answer.

Records carry the catalog's own fields (artist, year, …) besides the ones
named here, so the record-like models allow extra fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error: one message (it names no server path); 422 adds the validation errors."""

    detail: str = Field(description="What went wrong, in one line.")
    errors: list[dict[str, Any]] | None = Field(None, description="Validation errors (422 only).")


# ---- references ---------------------------------------------------------------------------
class Reference(BaseModel):
    """A reference as stored in the index, plus its catalog fields."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="Stable, URL-safe id.")
    name: str = Field(description="Display name.")
    filename: str = Field(description="Image file, relative to the refs folder (or to the collection for added ones).")


class Price(BaseModel):
    value: float
    currency: str | None = Field(None, description="e.g. EUR; none when the price file gives a bare number.")
    source: str = Field(description="`prices` (the --prices file) or `catalog` (the record's own `price` field).")


class ReferenceOut(Reference):
    image_url: str = Field(description="Where to fetch the image (add `&size=` or `?size=` for a thumbnail).")
    price: Price | float | str | None = Field(
        None, description="From the price file (by id or set code) or a numeric `price` field; else the catalog's own."
    )


class ReferenceDetail(ReferenceOut):
    added_via_api: bool = Field(description="True when the reference was added through `POST /api/refs`.")


class AddedReference(ReferenceOut):
    references: int = Field(description="Collection size after the change.")


class Deleted(BaseModel):
    deleted: Reference
    references: int = Field(description="Collection size after the change.")


class ReferencePage(BaseModel):
    total: int = Field(description="References matching `q` (all of them without it).")
    offset: int
    limit: int
    q: str | None = None
    sort: str | None = Field(None, description="`price`: most valuable first (unpriced last).")
    items: list[ReferenceOut]


# ---- identify and search -------------------------------------------------------------------
class Match(BaseModel):
    """A candidate reference with its scores."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    filename: str
    cosine: float | None = Field(None, description="Embedding similarity.")
    geom_score: float | None = Field(None, description="Geometric verification score (0-1).")
    inliers: int | None = Field(None, description="Keypoint matches consistent with the homography.")
    price: Price | float | str | None = Field(
        None, description="From the price file or a numeric `price` field (absent: no price); else the catalog's own."
    )


class IdentifyResult(BaseModel):
    """The object `cover-id identify --json` prints for one photo (with `multi`: one entry per cover)."""

    model_config = ConfigDict(extra="allow")

    input: str | None = Field(None, description="The uploaded file's name.")
    decision: str | None = Field(None, description="accept, review or reject.")
    confident: bool | None = None
    strategy: str | None = Field(None, description="The view that decided: crop (the detected cover) or full.")
    cosine: float | None = None
    geom_score: float | None = None
    inliers: int | None = None
    match: Match | None = None
    alternatives: list[dict[str, Any]] | None = None
    quad: list[list[float]] | None = Field(None, description="Detected cover corners in the photo (pixels).")
    match_quad: list[list[float]] | None = Field(None, description="The matched reference's outline in the photo.")
    multi: bool | None = None
    count: int | None = Field(None, description="With multi: how many covers were recognised.")
    covers: list[IdentifyResult] | None = Field(None, description="With multi: one result per cover.")
    image_size: list[int] | None = None
    timings_ms: dict[str, float] | None = Field(None, description="Per step; `total` for the whole photo.")
    session_item: dict[str, Any] | None = Field(None, description="With `?session=`: the session item it was added to.")


class SearchHit(Reference):
    cosine: float
    image_url: str | None = None


class ImageSearch(BaseModel):
    input: str | None = None
    k: int
    results: list[SearchHit]
    took_ms: float


class TextSearch(BaseModel):
    query: str
    k: int
    results: list[SearchHit]
    took_ms: float


# ---- sessions and feedback -------------------------------------------------------------------
class Correction(BaseModel):
    model_config = ConfigDict(extra="allow")

    action: str = Field(description="`correct` (another reference) or `absent` (not in my collection).")
    # 'from' is a Python keyword: the field keeps its JSON name through an alias.
    from_: str | None = Field(None, alias="from", description="The reference it was identified as.")
    at: str | None = None


class SessionItem(BaseModel):
    id: int
    ref_id: str | None = Field(description="The reference; none when not identified or not in the collection.")
    name: str
    record: dict[str, Any] = Field(description="The reference's catalog record when it was added.")
    count: int
    first_seen: str | None
    last_seen: str | None
    decision: str = Field(description="The decision when it was first seen: accept, review or reject.")
    input: str | None = None
    geom_score: float | None = None
    has_thumb: bool
    has_photo: bool
    correction: Correction | None = None
    confirmed: bool = Field(description="Confirmed or corrected by the user.")
    price: Price | None = None


class SessionTotal(BaseModel):
    by_currency: dict[str, float] = Field(description='Sum of price x count per currency ("" = none given).')
    priced: int
    unpriced: int


class SessionSummary(BaseModel):
    id: str
    name: str
    created: str | None
    updated: str | None
    items: int = Field(description="Distinct items.")
    count: int | None = Field(None, description="Items counted with their counts.")


class SessionList(BaseModel):
    sessions: list[SessionSummary]


class Session(BaseModel):
    id: str
    name: str
    created: str | None
    updated: str | None
    count: int = Field(description="Items counted with their counts.")
    items: list[SessionItem] = Field(description="Newest first.")
    total: SessionTotal


class Undo(BaseModel):
    undone: SessionItem | None = Field(description="The item as it was before the undo; none when nothing to undo.")
    session: Session


class Feedback(BaseModel):
    id: int
    action: str
    truth: str | None = Field(description="The right reference id; none for 'not in my collection'.")
    predicted: str | None = None
    session: str | None = None
    item: int | None = None
    view: dict[str, Any] | None = Field(
        None,
        description="The extra view of the item this photo became (`id`, `how`: `homography` or `outline`, "
        "`inliers`); none for 'absent', when the cover could not be found, or when teaching was not allowed.",
    )
    taught: str = Field("no", description="`yes` (the view was added), or why not.")


# ---- service -------------------------------------------------------------------------------
class IndexInfo(BaseModel):
    size: int = Field(description="References in the collection.")
    updated: str | None = None


class EncoderInfo(BaseModel):
    name: str
    spec: dict[str, Any]


class CalibrationInfo(BaseModel):
    source: str = Field(description="Where the thresholds come from: defaults, calibration or settings.")
    thresholds: dict[str, Any]
    index: dict[str, Any] | None = Field(None, description="The calibration stored in the index, if any.")


class WritesInfo(BaseModel):
    api_key_required: bool
    since_start: int


class Health(BaseModel):
    status: str
    version: str
    index: IndexInfo
    encoder: EncoderInfo
    text_search: bool
    projection: dict[str, Any] | None = None
    calibration: CalibrationInfo
    uptime_s: float
    requests: int
    last_response_ms: float | None = None
    workers: int
    writes: WritesInfo
    max_upload_mb: float


class KeypointCounts(BaseModel):
    min: int
    median: float
    max: int


class Stats(BaseModel):
    references: int
    added_via_api: int
    encoder: dict[str, Any]
    dim: int | None = None
    projection: dict[str, Any] | None = None
    keypoints: KeypointCounts
    updated: str | None = None
    fields: dict[str, dict[str, Any]] = Field(description="Per catalog field: type, counts or range.")
    computed_at: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Unreadable image or unusable request",
        401: "Missing or wrong API key",
        404: "Unknown reference, session or item",
        409: "Id or session name already taken",
        413: "Upload too large",
        415: "Unsupported upload type",
        422: "Invalid parameters",
        500: "Internal error",
        503: "Server busy: too many photos waiting for a worker (retry after the Retry-After seconds)",
    }.items()
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of one endpoint."""
    return {c: ERRORS[c] for c in (*codes, 422, 500)}
