"""``GET /health``: status, index size, encoder, calibration, counters."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder

from cover_id import __version__
from cover_id.server.schemas import Health, errors
from cover_id.server.state import ServerState, get_state, strip_paths, text_search_available

router = APIRouter(tags=["service"])
State = Annotated[ServerState, Depends(get_state)]


@router.get("/health", summary="Status, index, encoder, counters", response_model=Health, responses=errors())
async def health(state: State) -> Health:
    """Whether the service is up, what it serves and how busy it has been (no server paths)."""
    ident = state.identifier
    store = ident.store
    return Health.model_validate(
        {
            "status": "ok",
            "version": __version__,
            "index": {"size": store.size, "updated": store.manifest.get("updated")},
            "encoder": {"name": ident.encoder.name, "spec": strip_paths(store.encoder_spec)},
            "text_search": text_search_available(ident),
            "projection": strip_paths(store.manifest.get("projection")),
            "calibration": {
                "source": ident.threshold_source(),
                "thresholds": jsonable_encoder(asdict(ident.thresholds)),
                "index": strip_paths(store.manifest.get("calibration")),
            },
            "uptime_s": round(time.time() - state.started, 1),
            "requests": state.requests,
            "last_response_ms": state.last_ms,
            "workers": state.workers,
            "writes": {"api_key_required": state.api_key is not None, "since_start": state.collection.writes},
            "max_upload_mb": state.max_upload / 1048576,
        }
    )
