"""The files of a format-2 index folder: SQLite records and append-only segment files.

Layout::

    manifest.json     format 2, encoder spec, projection, calibration, search settings
    refs.db           SQLite (WAL): one row per reference slot (record, file hash,
                      keypoint offset/count, tombstone flag); meta (segment ends)
    keypoints.bin     per slot: xy float32 (n, 2) then RootSIFT uint8 (n, 128), at kp_off
    vectors.f32       encoder vectors, row ``slot`` at ``slot * dim * 4``
    embeddings.f32    index-space vectors (only when a projection head is applied)
    global.npz        checkpoint of the compact candidate index (covers slots < its count; names its own
                      kind and recipe version: basis, whitening scale, and the FAISS file's name)
    global-*.faiss    that FAISS index, a new name at every checkpoint (older indexes: inside global.npz)
    voter.faiss       keypoint-vote index of every descriptor, memory-mapped (small collections;
                      covers slots < manifest voter_covered)
    voter_words/      or (past 5,000 references, or vote_index: words) visual-word lists with Hamming signatures:
                      vocab.npz in memory; c2.npy, medians.npy (the words), postings.npy, sigs.npy memory-mapped
    encoder_state.npz state the encoder learned (local codebook); projection.npz: the head
    variant_regions.npz  a cache of where the collection's printings differ (identify writes it; safe to delete)

A write appends to the segment files past the committed ends, fsyncs them, then
commits one SQLite transaction that makes the new rows (and tombstones) visible:
a crash at any moment leaves the previous or the new state, bytes past the
committed ends are garbage that the next write overwrites.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cover_id.features import Features

# One row to append: record, raw vector or None, index-space vector or None, features,
# sha256 or None, (size, mtime_ns) of the source file or None.
Item = tuple[
    dict[str, Any], "np.ndarray | None", "np.ndarray | None", "Features", "str | None", "tuple[int, int] | None"
]
KP_BYTES = 8 + 128  # one keypoint: xy float32 x2 + descriptor uint8 x128

SCHEMA = """
CREATE TABLE IF NOT EXISTS refs(
    slot INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    record TEXT NOT NULL,
    kp_off INTEGER NOT NULL,
    kp_n INTEGER NOT NULL,
    w INTEGER NOT NULL,
    h INTEGER NOT NULL,
    has_vec INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0,
    item TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS live_id ON refs(id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS by_id ON refs(id);
CREATE INDEX IF NOT EXISTS by_file ON refs(filename);
CREATE INDEX IF NOT EXISTS by_deleted ON refs(deleted);
CREATE INDEX IF NOT EXISTS pending ON refs(slot) WHERE has_vec = 0;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Several images of one item: every view's row names its item (NULL: a reference of its own).
ITEM_SCHEMA = "CREATE INDEX IF NOT EXISTS by_item ON refs(item) WHERE item IS NOT NULL;"
# Text search over every string of the live records (FTS5), kept in step by triggers, so every
# write path (build, add, delete, compaction) updates it inside its own transaction.
_TEXT = "(SELECT group_concat(value, ' ') FROM json_tree(NEW.record) WHERE type = 'text' AND key != 'cover_url')"
FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS refs_fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS refs_fts_add AFTER INSERT ON refs WHEN NEW.deleted = 0 BEGIN
    INSERT INTO refs_fts(rowid, body) VALUES (NEW.slot, {_TEXT});
END;
CREATE TRIGGER IF NOT EXISTS refs_fts_change AFTER UPDATE OF record, deleted ON refs BEGIN
    DELETE FROM refs_fts WHERE rowid = OLD.slot;
    INSERT INTO refs_fts(rowid, body) SELECT NEW.slot, {_TEXT} WHERE NEW.deleted = 0;
END;
CREATE TRIGGER IF NOT EXISTS refs_fts_drop AFTER DELETE ON refs BEGIN
    DELETE FROM refs_fts WHERE rowid = OLD.slot;
END;
"""
# A record rewritten in place (a re-run of ``cover-id index`` on a changed catalog) keeps its item column in step.
ITEM_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS refs_item AFTER UPDATE OF record ON refs BEGIN
    UPDATE refs SET item = json_extract(NEW.record, '$.item') WHERE slot = NEW.slot;
END;
"""


class RWLock:
    """Many readers or one writer (guards the in-memory search structures)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def migrate(db: sqlite3.Connection) -> bool:
    """Bring an older format-2 ``refs.db`` up to date: the ``item`` column, the text-search table.

    Both are additive (no existing row changes meaning). Returns whether text search is available
    (SQLite built without FTS5, or a read-only folder, leaves it out; search falls back to a scan).
    """
    columns = {r[1] for r in db.execute("PRAGMA table_info(refs)")}
    try:
        if "item" not in columns:
            db.execute("ALTER TABLE refs ADD COLUMN item TEXT")
        db.executescript(ITEM_SCHEMA)
        db.executescript(ITEM_TRIGGER)
    except sqlite3.OperationalError:  # read-only: views of items are read from the records
        pass
    try:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'refs_fts'").fetchone() is not None
        if not exists:
            db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _statements(FTS_SCHEMA):
                    db.execute(stmt)
                text = _TEXT.replace("NEW.record", "record")
                db.execute(f"INSERT INTO refs_fts(rowid, body) SELECT slot, {text} FROM refs WHERE deleted = 0")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False


def _statements(script: str) -> list[str]:
    """Split :data:`FTS_SCHEMA` into statements (triggers contain ';' inside BEGIN ... END)."""
    out, cur = [], []
    for line in script.strip().splitlines():
        cur.append(line)
        text = "\n".join(cur).strip()
        if text.endswith(";") and (text.count("BEGIN") == 0 or text.endswith("END;")):
            out.append(text)
            cur = []
    return out


class Disk:
    """Open files of one index folder, shared by every snapshot (store copy) of it."""

    def __init__(self, path: Path, dim: int, emb_dim: int | None) -> None:
        self.path = Path(path)
        self.dim = int(dim)  # encoder (raw) vector size
        self.emb_dim = emb_dim  # index-space size when a head is applied, else None
        self.db = sqlite3.connect(self.path / "refs.db", check_same_thread=False, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.has_fts = migrate(self.db)
        self.db_lock = threading.RLock()  # one connection shared by threads
        self.search_lock = RWLock()
        flags = os.O_RDWR | os.O_CREAT
        self.kp_fd = os.open(self.path / "keypoints.bin", flags, 0o644)
        self.vec_fd = os.open(self.path / "vectors.f32", flags, 0o644)
        self.emb_fd = os.open(self.path / "embeddings.f32", flags, 0o644) if emb_dim else None
        self.shared: dict[str, Any] = {}  # search structures, loaded once per folder

    def checkpoint(self) -> None:
        """Fold the write-ahead log into refs.db (after a bulk build: the first open stays fast)."""
        with self.db_lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        for fd in (self.kp_fd, self.vec_fd, self.emb_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    # ---- queries ---------------------------------------------------------------------
    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.db_lock:
            return self.db.execute(sql, args).fetchall()

    def meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def live_slots(self) -> "np.ndarray":
        """Slots of the references in the collection (not deleted, vector stored), ascending."""
        import itertools

        import numpy as np

        with self.db_lock:
            count, top = self.db.execute("SELECT COUNT(*), MAX(slot) FROM refs").fetchone()
            if top is None:
                return np.zeros(0, np.int64)
            if count == top + 1:
                # Slots 0..top without gaps (as appends number them): list only the few that are not live,
                # through their indexes, instead of a Python value for each of up to millions of live rows.
                cur = self.db.execute(
                    "SELECT slot FROM refs WHERE deleted = 1 UNION SELECT slot FROM refs WHERE has_vec = 0"
                )
                gone = np.fromiter(itertools.chain.from_iterable(cur), dtype=np.int64)
                return np.delete(np.arange(top + 1, dtype=np.int64), gone)
            cur = self.db.execute("SELECT slot FROM refs WHERE deleted = 0 AND has_vec = 1 ORDER BY slot")
            return np.fromiter(itertools.chain.from_iterable(cur), dtype=np.int64)  # no Python frame a row

    def next_slot(self) -> int:
        rows = self.query("SELECT MAX(slot) FROM refs")
        return 0 if rows[0][0] is None else int(rows[0][0]) + 1

    def record(self, slot: int) -> dict[str, Any]:
        rows = self.query("SELECT record FROM refs WHERE slot = ?", (int(slot),))
        if not rows:
            raise IndexError(slot)
        return json.loads(rows[0][0])

    def iter_records(self, slots: "np.ndarray") -> Iterator[dict[str, Any]]:
        """Records of ``slots`` (sorted ascending), in one pass over the table."""
        if not len(slots):
            return
        wanted = iter(int(s) for s in slots)
        nxt = next(wanted, None)
        with self.db_lock:
            rows = self.db.execute(
                "SELECT slot, record FROM refs WHERE slot BETWEEN ? AND ? ORDER BY slot",
                (int(slots[0]), int(slots[-1])),
            ).fetchall()
        for slot, rec in rows:
            if nxt is None:
                return
            if slot == nxt:
                yield json.loads(rec)
                nxt = next(wanted, None)

    def slots_of_id(self, ref_id: str) -> list[int]:
        return [r[0] for r in self.query("SELECT slot FROM refs WHERE id = ? ORDER BY slot DESC", (ref_id,))]

    def features(self, slot: int) -> "Features":
        import numpy as np

        from cover_id.features import Features

        rows = self.query("SELECT kp_off, kp_n, w, h FROM refs WHERE slot = ?", (int(slot),))
        if not rows:
            raise IndexError(slot)
        off, n, w, h = rows[0]
        data = os.pread(self.kp_fd, n * KP_BYTES, off) if n else b""
        if len(data) != n * KP_BYTES:
            raise OSError(f"keypoints.bin is shorter than the database says (slot {slot})")
        buf = np.frombuffer(data, dtype=np.uint8)
        xy = buf[: n * 8].view(np.float32).reshape(n, 2)
        desc = buf[n * 8 :].reshape(n, 128)
        return Features(xy, desc, (int(w), int(h)))

    def vectors(self, slots: "np.ndarray", which: str = "raw") -> "np.ndarray":
        """Rows of the raw (``vectors.f32``) or index-space (``embeddings.f32``) segment."""
        import numpy as np

        fd, dim = self._segment(which)
        out = np.empty((len(slots), dim), np.float32)
        row = dim * 4
        for j, s in enumerate(np.asarray(slots, np.int64)):
            data = os.pread(fd, row, int(s) * row)
            if len(data) != row:
                raise OSError(f"vector segment is shorter than the database says (slot {int(s)})")
            out[j] = np.frombuffer(data, np.float32)
        return out

    def _segment(self, which: str) -> tuple[int, int]:
        """(file descriptor, row size) of the raw or index-space vector segment."""
        if which == "emb" and self.emb_fd is not None:
            return self.emb_fd, int(self.emb_dim or 0)
        return self.vec_fd, self.dim

    def all_vectors(self, slots: "np.ndarray", which: str = "raw", chunk: int = 4096) -> Iterator["np.ndarray"]:
        """Stream rows of ``slots`` in chunks (reads contiguous runs with one call)."""
        import numpy as np

        fd, dim = self._segment(which)
        slots = np.asarray(slots, np.int64)
        for a in range(0, len(slots), chunk):
            part = slots[a : a + chunk]
            lo, hi = int(part[0]), int(part[-1]) + 1
            data = os.pread(fd, (hi - lo) * dim * 4, lo * dim * 4)
            block = np.frombuffer(data, np.float32).reshape(-1, dim)
            yield block[part - lo].copy()

    def keypoint_counts(self, slots: "np.ndarray") -> "np.ndarray":
        import numpy as np

        want = set(int(s) for s in slots)
        rows = self.query("SELECT slot, kp_n FROM refs")
        return np.array([n for s, n in rows if s in want], np.int64)

    # ---- writing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: holds SQLite's write lock (other processes wait)."""
        with self.db_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def append(
        self,
        db: sqlite3.Connection,
        items: "Sequence[Item]",
    ) -> list[int]:
        """Inside :meth:`transaction`: write segment bytes then insert rows; returns the slots.

        Each item is (record, raw vector or None, index-space vector or None,
        features, sha256, (size, mtime_ns) of the source file or None).
        """
        import numpy as np

        row = db.execute("SELECT value FROM meta WHERE key = 'kp_end'").fetchone()
        kp_end = int(row[0]) if row else 0
        row = db.execute("SELECT MAX(slot) FROM refs").fetchone()
        slot = 0 if row[0] is None else int(row[0]) + 1
        slots, rows = [], []
        for record, raw, emb, feats, sha, stat in items:
            n = len(feats)
            blob = (
                np.ascontiguousarray(feats.xy, np.float32).tobytes()
                + np.ascontiguousarray(feats.desc, np.uint8).tobytes()
            )
            if blob:
                os.pwrite(self.kp_fd, blob, kp_end)
            if raw is not None:
                os.pwrite(self.vec_fd, np.ascontiguousarray(raw, np.float32).reshape(-1).tobytes(), slot * self.dim * 4)
            if emb is not None and self.emb_fd is not None:
                os.pwrite(
                    self.emb_fd,
                    np.ascontiguousarray(emb, np.float32).reshape(-1).tobytes(),
                    slot * int(self.emb_dim or 0) * 4,
                )
            size, mtime = stat if stat else (None, None)
            rows.append(
                (
                    slot,
                    record["id"],
                    record["filename"],
                    sha,
                    size,
                    mtime,
                    json.dumps(record, ensure_ascii=False),
                    kp_end,
                    n,
                    int(feats.size[0]),
                    int(feats.size[1]),
                    int(raw is not None),
                    record.get("item"),
                )
            )
            slots.append(slot)
            kp_end += len(blob)
            slot += 1
        for fd in (self.kp_fd, self.vec_fd, self.emb_fd):
            if fd is not None:
                os.fsync(fd)  # segment bytes are on disk before the rows that point at them
        db.executemany(
            "INSERT INTO refs(slot, id, filename, sha256, size, mtime_ns, record, kp_off, kp_n, w, h, has_vec, item)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('kp_end', ?)", (str(kp_end),))
        return slots

    def write_vectors(
        self, db: sqlite3.Connection, slots: list[int], raw: "np.ndarray", emb: "np.ndarray | None"
    ) -> None:
        """Inside :meth:`transaction`: fill in vectors of rows that were stored without them."""
        import numpy as np

        for j, s in enumerate(slots):
            os.pwrite(self.vec_fd, np.ascontiguousarray(raw[j], np.float32).tobytes(), int(s) * self.dim * 4)
            if emb is not None and self.emb_fd is not None:
                os.pwrite(
                    self.emb_fd, np.ascontiguousarray(emb[j], np.float32).tobytes(), int(s) * int(self.emb_dim or 0) * 4
                )
        for fd in (self.vec_fd, self.emb_fd):
            if fd is not None:
                os.fsync(fd)
        db.executemany("UPDATE refs SET has_vec = 1 WHERE slot = ?", [(int(s),) for s in slots])


def create_disk(path: Path, dim: int, emb_dim: int | None) -> Disk:
    path.mkdir(parents=True, exist_ok=True)
    from cover_id.store_io import fsync_path

    disk = Disk(path, dim, emb_dim)
    fsync_path(path)
    return disk
