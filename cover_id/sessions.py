"""Scan sessions and labelled feedback, in one SQLite file beside the index (``INDEX.sessions.sqlite``).

A *session* is a list of identified *items* (a shelf, a box of cards): each
item has a count, first/last time seen, a thumbnail, the decision, the photo
it was first seen in, and any correction. Every addition is also a *scan*
row, so "undo" takes back exactly the last addition. *Feedback* rows are
labelled examples (a photo and the truth: a reference id, or empty for "not
in my collection") that export as a ``truth.csv`` + ``photos/`` folder for
``cover-id verify --queries … --calibrate``.

stdlib ``sqlite3`` in WAL mode; every change is one transaction, so a crash
loses nothing that was acknowledged. The file lives *beside* the index
folder, never inside it (the index engine owns that folder).
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cover_id.errors import CoverIdError

THUMB_SIDE = 160
PHOTO_SIDE = 1280  # photos kept for feedback: large enough to identify again, small enough to keep many
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    ref_id TEXT, name TEXT NOT NULL, record TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, decision TEXT NOT NULL, input TEXT,
    geom_score REAL, thumb BLOB, photo BLOB, correction TEXT, confirmed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS items_session ON items(session_id, ref_id);
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, action TEXT NOT NULL,
    truth TEXT NOT NULL, predicted TEXT, decision TEXT, session_id TEXT, item_id INTEGER,
    input TEXT, photo BLOB NOT NULL);
"""
ACTIONS = ("confirm", "correct", "absent")
EXPORT_COLUMNS = [
    "item",
    "count",
    "name",
    "ref_id",
    "decision",
    "price",
    "currency",
    "first_seen",
    "last_seen",
    "input",
    "corrected_from",
    "confirmed",
]


class SessionNotFound(CoverIdError):
    """No session or item with that id."""


class SessionConflict(CoverIdError):
    """A session of that name exists already."""


def sessions_path(index: Path) -> Path:
    """Where the sessions of an index live: ``INDEX.sessions.sqlite`` beside the index folder."""
    index = Path(index)
    return index.parent / f"{index.name}.sessions.sqlite"


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def thumb_and_photo(image: Any) -> tuple[bytes | None, bytes | None]:
    """``image`` (bytes, a path or a BGR array) as (thumbnail, kept photo) JPEGs; (None, None) when unreadable.

    The photo is decoded once; a JPEG that is already small enough is kept byte for byte.
    """
    from cover_id.imageio import image_size, read_image
    from cover_id.imageops import jpeg_thumbnail

    raw: bytes | None = None
    try:
        if isinstance(image, (str, Path)):
            raw = Path(image).read_bytes()
        elif isinstance(image, (bytes, bytearray)):
            raw = bytes(image)
        arr = read_image(raw, max_side=PHOTO_SIDE) if raw is not None else image
    except (CoverIdError, OSError):
        return None, None
    thumb = jpeg_thumbnail(arr, THUMB_SIDE, quality=80) or None
    if raw is not None and raw[:3] == b"\xff\xd8\xff" and max(image_size(raw)) <= PHOTO_SIDE:
        return thumb, raw
    return thumb, jpeg_thumbnail(arr, PHOTO_SIDE, quality=90) or None


def _plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """A reference's catalog record without scores and what the API added (a looked-up price object)."""
    drop = ("cosine", "geom_score", "inliers", "image_url", "added_via_api")
    return {k: v for k, v in record.items() if k not in drop and not (k == "price" and isinstance(v, dict))}


def match_record(result: dict[str, Any]) -> dict[str, Any] | None:
    """The reference a result names as found (accept or review); None for reject and errors."""
    if result.get("decision") in ("accept", "review") and isinstance(result.get("match"), dict):
        return result["match"]
    return None


class SessionStore:
    """Sessions and feedback of one index. Thread-safe: one connection, one lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened on first use (a server on a read-only index still starts; sessions then fail)."""
        with self._lock:
            if self._conn is None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                    db.row_factory = sqlite3.Row
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA foreign_keys=ON")
                    db.execute("PRAGMA synchronous=NORMAL")
                    db.executescript(SCHEMA)
                except (sqlite3.DatabaseError, OSError) as exc:
                    raise CoverIdError(f"sessions database {self.path.name} cannot be opened ({exc})") from None
                self._conn = db
            return self._conn

    @classmethod
    def for_index(cls, index: Path) -> "SessionStore":
        return cls(sessions_path(index))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- sessions ----------------------------------------------------------------------------
    def create(self, name: str | None = None) -> dict[str, Any]:
        now = time.time()
        name = (name or "").strip() or time.strftime("Session %Y-%m-%d %H:%M:%S", time.gmtime(now))
        if len(name) > 200:
            raise CoverIdError("session name too long (at most 200 characters)")
        sid = uuid.uuid4().hex[:12]
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone():
                raise SessionConflict(f"a session named '{name}' exists already")
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (sid, name, now, now))
        return self.get(sid)

    def open_or_create(self, name: str) -> dict[str, Any]:
        """The session named ``name`` (or with that id), created when there is none."""
        row = self._session_row(name, by_name=True)
        return self.get(row["id"]) if row else self.create(name)

    def _session_row(self, key: str, by_name: bool = False) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute("SELECT * FROM sessions WHERE id = ?", (key,)).fetchone()
            if row is None and by_name:
                row = self._db.execute("SELECT * FROM sessions WHERE name = ?", (key,)).fetchone()
        return row

    def _require(self, sid: str) -> sqlite3.Row:
        row = self._session_row(sid)
        if row is None:
            raise SessionNotFound(f"no session with id '{sid}'")
        return row

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.*, COUNT(i.id) AS items, COALESCE(SUM(i.count), 0) AS scans FROM sessions s "
                "LEFT JOIN items i ON i.session_id = s.id GROUP BY s.id ORDER BY s.updated DESC"
            ).fetchall()
        return [self._session_out(r, items=int(r["items"]), count=int(r["scans"])) for r in rows]

    @staticmethod
    def _session_out(row: sqlite3.Row, **extra: Any) -> dict[str, Any]:
        return {
            "id": row["id"],
            "name": row["name"],
            "created": _iso(row["created"]),
            "updated": _iso(row["updated"]),
            **extra,
        }

    def get(self, sid: str) -> dict[str, Any]:
        """A session with its items (newest first); prices are added by the caller (:func:`with_prices`)."""
        row = self._require(sid)
        with self._lock:
            items = self._db.execute(
                "SELECT * FROM items WHERE session_id = ? ORDER BY last_seen DESC, id DESC", (sid,)
            ).fetchall()
        out = [self._item_out(r) for r in items]
        return self._session_out(row, items=out, count=sum(i["count"] for i in out))

    @staticmethod
    def _item_out(r: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": r["id"],
            "ref_id": r["ref_id"],
            "name": r["name"],
            "record": json.loads(r["record"]),
            "count": r["count"],
            "first_seen": _iso(r["first_seen"]),
            "last_seen": _iso(r["last_seen"]),
            "decision": r["decision"],
            "input": r["input"],
            "geom_score": r["geom_score"],
            "has_thumb": r["thumb"] is not None,
            "has_photo": r["photo"] is not None,
            "correction": json.loads(r["correction"]) if r["correction"] else None,
            "confirmed": bool(r["confirmed"]),
        }

    def delete(self, sid: str) -> None:
        self._require(sid)
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (sid,))

    # ---- items -------------------------------------------------------------------------------
    def add_result(self, sid: str, result: dict[str, Any], photo: Any = None) -> dict[str, Any]:
        """Add one identify answer; the same reference again only raises its count. Returns the item.

        A reject (nothing found) becomes an item of its own, named "not identified", so the user can
        correct it. ``photo`` (bytes, a path or a BGR array) gives the thumbnail and the kept photo.
        """
        if "error" in result or result.get("decision") not in ("accept", "review", "reject"):
            raise CoverIdError("only identify answers with a decision can be added to a session")
        self._require(sid)
        found = match_record(result)
        ref_id = found.get("id") if found else None
        name = str(found.get("name") or ref_id) if found else "not identified"
        record = _plain_record(found or {})
        now = time.time()
        with self._tx() as db:
            row = None
            if ref_id is not None:
                row = db.execute(
                    "SELECT id FROM items WHERE session_id = ? AND ref_id = ? ORDER BY id LIMIT 1", (sid, ref_id)
                ).fetchone()
            if row is not None:
                item_id = int(row["id"])
                db.execute("UPDATE items SET count = count + 1, last_seen = ? WHERE id = ?", (now, item_id))
            else:
                thumb, kept = thumb_and_photo(photo) if photo is not None else (None, None)
                cur = db.execute(
                    "INSERT INTO items (session_id, ref_id, name, record, count, first_seen, last_seen, decision, "
                    "input, geom_score, thumb, photo) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sid,
                        ref_id,
                        name,
                        json.dumps(record, ensure_ascii=False, default=str),
                        now,
                        now,
                        result["decision"],
                        str(result.get("input") or ""),
                        result.get("geom_score"),
                        thumb,
                        kept,
                    ),
                )
                item_id = int(cur.lastrowid or 0)
            db.execute("INSERT INTO scans (session_id, item_id, at) VALUES (?, ?, ?)", (sid, item_id, now))
            db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, sid))
        return self.item(sid, item_id)

    def item(self, sid: str, item_id: int) -> dict[str, Any]:
        with self._lock:
            r = self._db.execute("SELECT * FROM items WHERE id = ? AND session_id = ?", (item_id, sid)).fetchone()
        if r is None:
            raise SessionNotFound(f"no item {item_id} in session '{sid}'")
        return self._item_out(r)

    def blob(self, sid: str, item_id: int, kind: str) -> bytes:
        """An item's thumbnail (``thumb``) or kept photo (``photo``) as JPEG bytes."""
        assert kind in ("thumb", "photo")
        with self._lock:
            r = self._db.execute(f"SELECT {kind} FROM items WHERE id = ? AND session_id = ?", (item_id, sid)).fetchone()
        if r is None or r[0] is None:
            raise SessionNotFound(
                f"item {item_id} of session '{sid}' has no {'thumbnail' if kind == 'thumb' else kind}"
            )
        return bytes(r[0])

    def undo(self, sid: str) -> dict[str, Any] | None:
        """Take back the last addition (count - 1, the item goes at 0); returns the item as it was, or None."""
        self._require(sid)
        with self._tx() as db:
            scan = db.execute(
                "SELECT id, item_id FROM scans WHERE session_id = ? ORDER BY id DESC LIMIT 1", (sid,)
            ).fetchone()
            if scan is None:
                return None
            r = db.execute("SELECT * FROM items WHERE id = ?", (scan["item_id"],)).fetchone()
            db.execute("DELETE FROM scans WHERE id = ?", (scan["id"],))
            if r["count"] <= 1:
                db.execute("DELETE FROM items WHERE id = ?", (r["id"],))
            else:
                last = (
                    db.execute("SELECT MAX(at) FROM scans WHERE item_id = ?", (r["id"],)).fetchone()[0]
                    or r["first_seen"]
                )
                db.execute("UPDATE items SET count = count - 1, last_seen = ? WHERE id = ?", (last, r["id"]))
            db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), sid))
        return self._item_out(r)

    def remove(self, sid: str, item_id: int) -> dict[str, Any]:
        """Remove an item whatever its count."""
        item = self.item(sid, item_id)
        with self._tx() as db:
            db.execute("DELETE FROM items WHERE id = ?", (item_id,))
            db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), sid))
        return item

    def set_count(self, sid: str, item_id: int, count: int) -> dict[str, Any]:
        if count < 1:
            raise CoverIdError("count must be at least 1 (remove the item instead)")
        self.item(sid, item_id)
        with self._tx() as db:
            db.execute("UPDATE items SET count = ? WHERE id = ?", (count, item_id))
        return self.item(sid, item_id)

    def correct(self, sid: str, item_id: int, action: str, record: dict[str, Any] | None) -> dict[str, Any]:
        """Mark an item confirmed, or change it to ``record`` (correct) or to "not in my collection" (absent)."""
        item = self.item(sid, item_id)
        with self._tx() as db:
            if action == "confirm":
                db.execute("UPDATE items SET confirmed = 1 WHERE id = ?", (item_id,))
            else:
                fix = {"from": item["ref_id"], "from_name": item["name"], "action": action, "at": _iso(time.time())}
                rec = _plain_record(record or {})
                db.execute(
                    "UPDATE items SET ref_id = ?, name = ?, record = ?, correction = ?, confirmed = 1 WHERE id = ?",
                    (
                        rec.get("id"),
                        str(rec.get("name") or "not in my collection"),
                        json.dumps(rec, ensure_ascii=False, default=str),
                        json.dumps(fix),
                        item_id,
                    ),
                )
        return self.item(sid, item_id)

    # ---- feedback (labelled examples) ---------------------------------------------------------------
    def add_feedback(
        self,
        action: str,
        truth: str,
        photo: bytes,
        predicted: str | None = None,
        decision: str | None = None,
        session_id: str | None = None,
        item_id: int | None = None,
        input_name: str | None = None,
    ) -> dict[str, Any]:
        if action not in ACTIONS:
            raise CoverIdError(f"action must be one of {', '.join(ACTIONS)} (got '{action}')")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO feedback (created, action, truth, predicted, decision, session_id, item_id, input, photo) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), action, truth, predicted, decision, session_id, item_id, input_name, photo),
            )
            fid = int(cur.lastrowid or 0)
        return {
            "id": fid,
            "action": action,
            "truth": truth or None,
            "predicted": predicted,
            "session": session_id,
            "item": item_id,
        }

    def feedback_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def export_feedback(self, out: Path) -> int:
        """Write ``out/truth.csv`` and ``out/photos/`` (the latest label of each photo wins); returns rows."""
        out = Path(out)
        photos = out / "photos"
        photos.mkdir(parents=True, exist_ok=True)
        with self._lock:
            rows = self._db.execute("SELECT * FROM feedback ORDER BY id").fetchall()
        latest: dict[str, sqlite3.Row] = {}
        for r in rows:  # a photo corrected twice keeps its last label
            key = f"item:{r['session_id']}:{r['item_id']}" if r["item_id"] is not None else f"fb:{r['id']}"
            latest[key] = r
        tmp = out / "truth.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["photo", "reference", "action", "predicted"])
            for r in sorted(latest.values(), key=lambda r: r["id"]):
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(r["input"] or "photo").stem)[:60] or "photo"
                name = f"{r['id']:06d}_{stem}.jpg"
                (photos / name).write_bytes(r["photo"])
                w.writerow([f"photos/{name}", r["truth"], r["action"], r["predicted"] or ""])
        tmp.replace(out / "truth.csv")
        return len(latest)


def with_prices(session: dict[str, Any], prices: Any) -> dict[str, Any]:
    """A session with each item's ``price`` (from ``prices``, a :class:`~cover_id.prices.PriceBook`) and the total."""
    from cover_id.prices import total

    pairs = []
    for item in session.get("items", []):
        item["price"] = prices.lookup(item["record"]) if item["ref_id"] else None
        pairs.append((item["price"], item["count"]))
    session["total"] = total(pairs)
    return session


def export_rows(session: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per item (the CSV export), oldest first."""
    rows = []
    for it in sorted(session["items"], key=lambda i: (i["first_seen"] or "", i["id"])):
        price = it.get("price") or {}
        rows.append(
            {
                "item": it["id"],
                "count": it["count"],
                "name": it["name"],
                "ref_id": it["ref_id"] or "",
                "decision": it["decision"],
                "price": price.get("value", ""),
                "currency": price.get("currency") or "",
                "first_seen": it["first_seen"],
                "last_seen": it["last_seen"],
                "input": it["input"] or "",
                "corrected_from": (it["correction"] or {}).get("from") or "",
                "confirmed": int(it["confirmed"]),
            }
        )
    return rows
