"""What the endpoints share (the collection, limits, counters) and how records are shown to clients.

Nothing a client sees names a path on the server: references added through
the API are reported relative to the collection (``INDEX.added/…``), and any
other absolute path in a response is cut to its file name.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from fastapi import HTTPException, Request

from cover_id.errors import ImageError
from cover_id.prices import PriceBook
from cover_id.runtime import thread_count
from cover_id.server.collection import Collection
from cover_id.sessions import SessionStore

if TYPE_CHECKING:
    from cover_id.index.store import IndexStore
    from cover_id.pipeline import Identifier

THUMB_CACHE = 512
QUEUE_PER_WORKER = 8  # photos that may wait for a worker, per worker; beyond, a 503 "busy" at once
# An absolute POSIX or Windows path (at least two components), as it may appear inside a message.
_ABS_PATH = re.compile(r"(?:(?<![\w.:/])/|\b[A-Za-z]:[\\/])(?:[^\s'\"/\\]+[\\/])+([^\s'\"/\\]*)")


class ServerState:
    """The collection, the limits and the counters of one running service."""

    def __init__(self, collection: Collection, settings: dict[str, Any]) -> None:
        self.collection = collection
        self.settings = settings
        self.workers = max(1, int(settings.get("workers") or thread_count(0)))
        self.max_waiting = QUEUE_PER_WORKER * self.workers
        self.waiting = 0  # CPU jobs running or queued (touched on the event loop only)
        self.api_key: str | None = settings.get("api_key") or None
        self.max_upload = int(float(settings.get("max_upload_mb") or 10) * 1024 * 1024)
        self.started = time.time()
        self.requests = 0
        self.last_ms: float | None = None
        self.compute = anyio.CapacityLimiter(self.workers)
        self.prices = PriceBook.load(settings.get("prices"))
        self.sessions = SessionStore.for_index(collection.index_path)
        self._thumbs: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._thumb_lock = threading.Lock()

    @property
    def identifier(self) -> Identifier:
        return self.collection.identifier

    def check_busy(self) -> None:
        """A 503 when the queue is full: a client gets told at once instead of waiting behind everyone."""
        if self.waiting >= self.max_waiting:
            raise HTTPException(
                503,
                f"server busy: {self.waiting} photos are in hand for {self.workers} worker(s); try again shortly",
                headers={"Retry-After": "1"},
            )

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run CPU work in a worker thread, at most ``workers`` at once and at most ``max_waiting`` queued.

        Each worker thread gets ``cores / workers`` threads for its photo (``cover-id serve``
        sets that), so the running jobs use the cores without oversubscribing them; the
        index is loaded once and shared by every thread.
        """
        self.check_busy()
        self.waiting += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.compute)
        finally:
            self.waiting -= 1

    def thumbnail(self, path: Path, key: str, size: int) -> bytes:
        """A JPEG of the image at ``path`` with its longest side at most ``size`` (LRU-cached)."""
        from cover_id.imageio import read_image
        from cover_id.imageops import jpeg_thumbnail

        cache_key = (str(path), key, size)
        with self._thumb_lock:
            if cache_key in self._thumbs:
                self._thumbs.move_to_end(cache_key)
                return self._thumbs[cache_key]
        data = jpeg_thumbnail(read_image(path, max_side=size), size, quality=85)
        if not data:
            raise ImageError(f"{path.name}: cannot make a thumbnail")
        with self._thumb_lock:
            self._thumbs[cache_key] = data
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return data

    # ---- what clients see --------------------------------------------------------------
    def public_filename(self, filename: str) -> str:
        """A record's filename as clients see it: relative to the collection, never absolute."""
        p = Path(filename)
        if not p.is_absolute():
            return filename
        for root in (self.collection.index_path.parent, self.collection.added_dir.parent):
            try:
                return p.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
        return p.name

    def public(self, value: Any) -> Any:
        """``value`` with every record's filename made public (dicts and lists are walked)."""
        if isinstance(value, dict):
            out = {k: self.public(v) for k, v in value.items()}
            if isinstance(out.get("filename"), str) and "id" in out:
                out["filename"] = self.public_filename(out["filename"])
            return out
        if isinstance(value, list):
            return [self.public(v) for v in value]
        return value

    def record(self, store: IndexStore, i: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reference ``i`` as the API shows it: its record, ``extra`` and its image URL."""
        rec = self.public(store.records[i])
        price = self.prices.lookup(rec)
        return {**rec, **(extra or {}), "image_url": image_url(store, i), **({"price": price} if price else {})}


def text_search_available(identifier: Identifier) -> bool:
    """Whether the index's encoder can embed text (clip has a text tower, local has none)."""
    return identifier.encoder.supports_text


def get_state(request: Request) -> ServerState:
    """The dependency every route uses to reach the shared state."""
    state: ServerState = request.app.state.cover
    return state


def image_sha(store: IndexStore, i: int) -> str | None:
    sha: str | None = store.manifest.get("files", {}).get(store.records[i]["filename"])
    return sha


def image_url(store: IndexStore, i: int) -> str:
    sha = image_sha(store, i)
    url = f"/api/refs/{quote(store.records[i]['id'], safe='')}/image"
    return f"{url}?v={sha[:12]}" if sha else url


def strip_paths(value: Any) -> Any:
    """``value`` with every absolute path inside its strings cut to the file name (dicts and lists walked)."""
    if isinstance(value, str):
        return _ABS_PATH.sub(lambda m: m.group(1) or "…", value)
    if isinstance(value, dict):
        return {k: strip_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_paths(v) for v in value]
    return value
