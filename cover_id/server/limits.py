"""Upload checks and two small ASGI middlewares: the body size limit and request metrics."""

from __future__ import annotations

import time
from pathlib import PurePath
from typing import Any

from fastapi import HTTPException

from cover_id.imageio import IMAGE_SUFFIXES

ALLOWED_TYPES = {
    "image/jpeg",
    "image/jpg",
    "image/pjpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/x-bmp",
    "image/x-ms-bmp",
    "image/tiff",
    "image/heic",
    "image/heif",
    "image/heic-sequence",
    "image/heif-sequence",
}
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
MULTIPART_SLACK = 64 * 1024  # form boundaries and other fields on top of the file itself
DRAIN_CAP = 128 * 1024 * 1024  # read and drop at most this much of a refused body


def check_upload(content_type: str | None, filename: str | None) -> None:
    """415 for anything that is declared as, or named like, a non-image."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = PurePath(filename or "").suffix.lower()
    what = f"'{filename}' ({ctype})" if filename else f"'{ctype}'"
    formats = "JPEG, PNG, WebP, BMP, TIFF or HEIC"
    if ctype in ALLOWED_TYPES:
        return
    if ctype in GENERIC_TYPES:
        if suffix and suffix not in IMAGE_SUFFIXES:
            raise HTTPException(415, f"unsupported file type {what}: send a {formats} image")
        return  # the decoder decides: an unreadable file is a 400
    raise HTTPException(415, f"unsupported file type {what}: send a {formats} image")


class UploadLimit:
    """Refuse request bodies over the upload limit with a 413, before they are parsed.

    A declared Content-Length over the limit is refused at once; a streamed body
    is counted as it arrives. The refused body is read and dropped (up to a cap)
    so that clients still sending it receive the 413 rather than a reset.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + MULTIPART_SLACK

    def message(self, size: int | None) -> str:
        mb = self.max_bytes / 1048576
        got = f"{size / 1e6:.1f} MB" if size else "more"
        return f"upload too large: {got} (limit {mb:g} MB; the limit is set with --max-upload-mb)"

    async def _drain(self, receive: Any, already: int = 0) -> None:
        seen = already
        while seen <= DRAIN_CAP:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            seen += len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    async def _reject(self, send: Any, size: int | None) -> None:
        import json

        body = json.dumps({"detail": self.message(size)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"") or -1)
        except ValueError:
            declared = -1
        if declared > self.limit:
            # With "Expect: 100-continue" the client has not sent the body yet: answer without reading it.
            if b"100-continue" not in headers.get(b"expect", b"").lower() and declared <= DRAIN_CAP:
                await self._drain(receive)
            await self._reject(send, declared)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    if msg.get("more_body", False):
                        await self._drain(receive, received)
                    raise HTTPException(413, self.message(None))
            return msg

        await self.app(scope, limited, send)


class Metrics:
    """Count finished requests and remember how long the last one took."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.requests += 1
            self.state.last_ms = round((time.perf_counter() - t0) * 1000, 1)
