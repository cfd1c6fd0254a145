"""Checks that run before an endpoint does its work: the API key, the upload's form and size.

The key is checked by :class:`KeyCheckedRoute` *before* FastAPI reads the
request body, so a client without the key gets 401 even when its upload is
broken, and no body is parsed for it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, UploadFile
from fastapi.routing import APIRoute

from cover_id.errors import ImageError
from cover_id.server.limits import ALLOWED_TYPES, check_upload
from cover_id.server.state import ServerState, get_state

UPLOAD_DOC = f"An image: {', '.join(sorted({t.split('/')[1] for t in ALLOWED_TYPES}))}."


def check_key(request: Request) -> None:
    """401 unless the request carries the API key (when one is set)."""
    key = get_state(request).api_key
    if key is None:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given:
        raise HTTPException(
            401, "this endpoint needs the API key: send it as header X-API-Key", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise HTTPException(401, "wrong API key", {"WWW-Authenticate": "Bearer"})


class KeyCheckedRoute(APIRoute):
    """A route that checks the API key before its body is read or its parameters are validated."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            check_key(request)
            return await handler(request)

        return checked


def require_multipart(request: Request) -> None:
    """415 unless the request is a multipart form (where the image is the ``file`` field)."""
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith("multipart/form-data"):
        raise HTTPException(
            415, f"send the image as multipart/form-data with a 'file' field, not '{ctype or 'no content type'}'"
        )


async def read_upload(state: ServerState, file: UploadFile) -> bytes:
    """The uploaded image's bytes; 415 for other types, 413 over the limit, 400 when empty."""
    check_upload(file.content_type, file.filename)
    data = await file.read()
    if len(data) > state.max_upload:
        raise HTTPException(
            413, f"upload too large: {len(data) / 1e6:.1f} MB (limit {state.max_upload / 1048576:g} MB)"
        )
    if not data:
        raise ImageError(f"{file.filename or 'uploaded image'}: empty file (0 bytes)")
    return data
