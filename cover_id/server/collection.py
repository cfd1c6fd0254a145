"""The served collection: one shared index, changed copy-on-write while requests run.

Readers (identify, search, listing) take ``identifier.store`` once and use that
snapshot throughout. A writer, holding the write lock, copies the current
store (cheap: snapshots share the open files), changes the copy, saves it (one
SQLite transaction, see :mod:`cover_id.index.disk`: it costs what it changes,
not the size of the collection) and only then publishes it by assigning
``identifier.store``. Readers therefore never see a half-changed collection,
and concurrent writers never lose each other's changes. Images added through
the API are kept beside the index, in ``<index>.added/`` (compaction replaces
the index folder as a whole); leftovers of killed writes are removed when the
collection is opened.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

    from cover_id.index.store import IndexStore
    from cover_id.pipeline import Identifier

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED_FIELDS = ("id", "name", "filename")
FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "HEIF": ".heic"}
LOW_CARDINALITY = 20  # fields with at most this many distinct values get counts per value


class NotFound(CoverIdError):
    """No reference with that id."""


class Conflict(CoverIdError):
    """A reference with that id already exists."""


class BadInput(CoverIdError):
    """A request parameter is well-formed but not acceptable."""


class PerThread:
    """Give each thread its own instance of a helper whose methods keep per-call state.

    OpenCV objects such as the line segment detector inside the quad detector
    are not safe to share between threads running at the same time.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._local = threading.local()

    def _get(self) -> Any:
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._local.obj = self._factory()
        return obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def make_thread_safe(identifier: "Identifier") -> None:
    """Replace the identifier's detector and re-ranker with per-thread instances."""
    from functools import partial

    from cover_id.plugins import instantiate, same_config

    for attr in ("detector", "reranker"):
        current = getattr(identifier, attr)
        if not isinstance(current, PerThread):  # each copy is configured like the original
            setattr(identifier, attr, PerThread(partial(instantiate, type(current), **same_config(current))))


def suffix_for(data: bytes) -> str:
    """File suffix from the image's actual format (upload names are not trusted)."""
    from cover_id.imageio import sniff_format

    return FORMAT_SUFFIX.get(sniff_format(data[:16]) or "", ".img")


def unique_id(store: "IndexStore", name: str) -> str:
    """A new URL-safe id from a name: ``dark-side``, ``dark-side-2``, ..."""
    from cover_id.index.catalog import slug_id

    base = slug_id(name.replace("/", " ").replace(".", " "))[:100] or "ref"
    candidate, n = base, 2
    while store.index_of(candidate) is not None:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


class Collection:
    """The identifier plus everything needed to change its index while serving."""

    def __init__(self, identifier: "Identifier", index_path: Path, added_dir: Path | None = None) -> None:
        self.identifier = identifier
        self.index_path = Path(index_path).resolve()
        self.added_dir = Path(added_dir) if added_dir else self.index_path.parent / f"{self.index_path.name}.added"
        self._write_lock = threading.Lock()
        self._stats: tuple["IndexStore", dict[str, Any]] | None = None
        self.writes = 0
        self.cleaned = self.clean_leftovers()

    def clean_leftovers(self) -> list[Path]:
        """Remove what killed writes left: stale staging folders, added images no reference uses."""
        from cover_id.store_io import clean_stale

        gone = clean_stale(self.index_path)
        gone += orphan_images(self.store, self.added_dir)
        for p in gone:
            if p.is_file():
                p.unlink(missing_ok=True)
        return gone

    @property
    def store(self) -> "IndexStore":
        return self.identifier.store

    def is_added(self, store: "IndexStore", i: int) -> bool:
        try:
            return store.image_path(i).resolve().is_relative_to(self.added_dir.resolve())
        except OSError:
            return False

    # ---- changing ----------------------------------------------------------------
    def add(
        self, data: bytes, name: str, ref_id: str | None = None, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Embed one uploaded image and add it as a reference; persisted before it is visible."""
        from cover_id.encoders import encode_references
        from cover_id.features import extract_features
        from cover_id.imageio import read_image
        from cover_id.index.build import REF_MAX_SIDE

        name = name.strip()
        if not name:
            raise BadInput("name must not be empty")
        if ref_id is not None and not ID_PATTERN.match(ref_id):
            raise BadInput(
                f"id '{ref_id}' is not allowed: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        fields = dict(fields or {})
        clash = [k for k in fields if k in RESERVED_FIELDS]
        if clash:
            raise BadInput(f"metadata must not set {', '.join(clash)} (given separately)")

        # The expensive part runs outside the lock: readers and other writers go on.
        image = read_image(data, max_side=REF_MAX_SIDE)
        feats = extract_features(image)
        raw = encode_references(self.identifier.encoder, [image], [feats])
        sha = hashlib.sha256(data).hexdigest()
        suffix = suffix_for(data)

        with self._write_lock:
            current = self.identifier.store
            if ref_id is None:
                ref_id = unique_id(current, name)
            elif current.index_of(ref_id) is not None:
                raise Conflict(f"a reference with id '{ref_id}' already exists")
            record = {"id": ref_id, "name": name, **fields}
            return self._commit(current, record, data, suffix, raw[0], feats, sha)

    def _commit(
        self, current: "IndexStore", record: dict[str, Any], data: bytes, suffix: str, raw: Any, feats: Any, sha: str
    ) -> dict[str, Any]:
        """Under the write lock: keep the image in ``INDEX.added/``, add the row, save (one transaction), publish."""
        from cover_id.store_io import atomic_write

        self.added_dir.mkdir(parents=True, exist_ok=True)
        path = self.added_dir / f"{record['id']}{suffix}"
        with atomic_write(path) as tmp:
            tmp.write_bytes(data)
        record = {"id": record["id"], "name": record["name"], "filename": str(path), **record}
        new = current.copy()
        new.add(record, raw, feats, sha)
        try:
            new.save(self.index_path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.identifier.store = new
        self.writes += 1
        return record

    def add_view(self, item: str, image: "np.ndarray", source: str = "feedback", **extra: Any) -> dict[str, Any]:
        """Add ``image`` (BGR, e.g. a confirmed photo's rectified cover) as another view of ``item``.

        The same write path as :meth:`add`: persisted (one SQLite transaction) before the new
        snapshot is published, so the next identify request uses it. Results keep naming the item.
        """
        import cv2

        from cover_id.encoders import encode_references
        from cover_id.features import extract_features
        from cover_id.imageops import shrink
        from cover_id.index.build import REF_MAX_SIDE

        image = shrink(image, REF_MAX_SIDE)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise BadInput("the view could not be encoded")
        data = buf.tobytes()
        feats = extract_features(image)
        raw = encode_references(self.identifier.encoder, [image], [feats])
        sha = hashlib.sha256(data).hexdigest()
        with self._write_lock:
            current = self.identifier.store
            row = current.index_of(item)
            if row is None:
                raise NotFound(f"no reference with id '{item}'")
            primary = current.records[row]
            item = primary.get("item") or primary["id"]  # a view's id names its item
            base = current.records[current.index_of(item) or row]
            n = max(1, len(current.views_of(item)))  # the primary is view 0
            view_id = f"{item}--{source}-{n}"
            while current.index_of(view_id) is not None:
                n += 1
                view_id = f"{item}--{source}-{n}"
            keep = {k: v for k, v in base.items() if k not in ("id", "name", "filename", "item", "images")}
            record = {"id": view_id, "name": base["name"], **keep, "item": item, "view_source": source, **extra}
            return self._commit(current, record, data, ".jpg", raw[0], feats, sha)

    def remove(self, ref_id: str) -> dict[str, Any]:
        """Drop one reference (an item: every view of it); image files added through the API go too."""
        with self._write_lock:
            current = self.identifier.store
            i = current.index_of(ref_id)
            if i is None:
                raise NotFound(f"no reference with id '{ref_id}'")
            rows = current.views_of(ref_id) if current.records[i].get("item") in (None, ref_id) else [i]
            owned = [current.image_path(r) for r in rows if self.is_added(current, r)]
            ids = [current.records[r]["id"] for r in rows]
            new = current.copy()
            record = new.remove(ref_id)
            for other in ids:
                if other != ref_id:
                    new.remove(other)
            new.save(self.index_path)
            self.identifier.store = new
            self.writes += 1
        for image in owned:
            image.unlink(missing_ok=True)  # a reader still on the old snapshot may get a 404 for it
        return record

    # ---- reading -----------------------------------------------------------------
    def find(self, ref_id: str) -> tuple["IndexStore", int]:
        store = self.identifier.store
        i = store.index_of(ref_id)
        if i is None:
            raise NotFound(f"no reference with id '{ref_id}'")
        return store, i

    def listing(self, offset: int, limit: int, q: str | None) -> tuple["IndexStore", list[int], int]:
        """Items (one row each: its primary view) matching ``q``, paged.

        ``q``: words that must all start a word of the id, name or any string field (SQLite FTS5,
        best match first); without ``q`` every item in collection order.
        """
        store = self.identifier.store
        if q and q.strip():
            rows = item_rows(store, store.text_search(q, 1 << 30))
        elif store.has_views:
            views = store.view_rows()
            rows = [i for i in range(store.size) if i not in views]
        else:
            rows = list(range(store.size))
        return store, rows[offset : offset + limit], len(rows)

    def stats(self) -> dict[str, Any]:
        """Counts and per-field summaries, computed once per published snapshot."""
        store = self.identifier.store
        cached = self._stats
        if cached is not None and cached[0] is store:
            return cached[1]
        out = summarize(store, added=sum(self.is_added(store, i) for i in range(store.size)))
        self._stats = (store, out)
        return out


def orphan_images(store: "IndexStore", added_dir: Path) -> list[Path]:
    """Files in ``added_dir`` that no reference of ``store`` points at (a write killed half-way)."""
    if not added_dir.is_dir():
        return []
    used = set()
    for r in store.records:
        p = Path(r["filename"])
        if p.is_absolute() and p.parent.resolve() == added_dir.resolve():
            used.add(p.name)
    return sorted(p for p in added_dir.iterdir() if p.is_file() and p.name not in used and not p.name.startswith("."))


def item_rows(store: "IndexStore", rows: list[int]) -> list[int]:
    """``rows`` as items: a view's hit becomes its item's primary row; each item once, in order."""
    if not store.has_views:
        return rows
    out: list[int] = []
    seen: set[int] = set()
    for row, key in zip(rows, store.item_keys(rows)):
        primary = store.index_of(key)
        row = row if primary is None else primary
        if row not in seen:
            seen.add(row)
            out.append(row)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(store: "IndexStore", added: int = 0) -> dict[str, Any]:
    """What ``GET /api/stats`` shows: counts, encoder and a summary of every metadata field."""
    import numpy as np

    values: dict[str, list[Any]] = {}
    for r in store.records:
        for k, v in r.items():
            if k in ("id", "filename") or v is None:
                continue
            values.setdefault(k, []).append(v)
    fields: dict[str, Any] = {}
    for k, vals in sorted(values.items()):
        entry: dict[str, Any] = {"present": len(vals)}
        flat: list[Any] = []
        for v in vals:
            flat.extend(v if isinstance(v, list) else [v])
        hashable = [v for v in flat if isinstance(v, (str, int, float, bool))]
        counts = Counter(hashable)
        if flat and all(_number(v) for v in flat):
            arr = np.asarray(flat, dtype=np.float64)
            entry.update(type="number", min=float(arr.min()), max=float(arr.max()), mean=round(float(arr.mean()), 4))
        elif any(isinstance(v, dict) for v in flat):
            entry["type"] = "object"
        else:
            entry["type"] = "list" if any(isinstance(v, list) for v in vals) else "string"
        if hashable:
            entry["distinct"] = len(counts)
            if len(counts) <= LOW_CARDINALITY and k != "name":
                entry["counts"] = {str(v): n for v, n in counts.most_common()}
            elif entry["type"] != "number":
                entry["top"] = {str(v): n for v, n in counts.most_common(5) if n > 1}
        fields[k] = entry
    kp = store.keypoint_counts()
    return {
        "references": store.size,
        "added_via_api": added,
        "encoder": {"name": store.encoder_spec.get("name"), "spec": store.encoder_spec},
        "dim": store.dim if store.size else store.manifest.get("dim"),
        "projection": store.manifest.get("projection"),
        "keypoints": {
            "min": int(kp.min()) if len(kp) else 0,
            "median": float(np.median(kp)) if len(kp) else 0.0,
            "max": int(kp.max()) if len(kp) else 0,
        },
        "updated": store.manifest.get("updated"),
        "fields": fields,
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
