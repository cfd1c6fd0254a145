"""The index folder (format 2): records in SQLite, vectors and keypoints in segment files.

See :mod:`cover_id.index.disk` for the layout. Opening an index reads the
manifest, the list of live slots (8 bytes per reference) and the compact
candidate index; records, keypoints and full vectors stay on disk and are
read for the rows a query actually touches.

An :class:`IndexStore` is a snapshot: rows ``0..size-1`` are its live slots
in order. :meth:`IndexStore.copy` is cheap (it shares the open files);
``add``/``remove`` on a copy are pending until :meth:`save` commits them in
one SQLite transaction, so readers of other snapshots never see half a change.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError, IndexMismatchError
from cover_id.store_io import atomic_write, clean_stale, discard, fsync_path, publish_dir, recover_dir, staging_dir

if TYPE_CHECKING:
    import numpy as np

    from cover_id.encoders.base import Encoder
    from cover_id.features import Features
    from cover_id.index.disk import Disk
    from cover_id.index.search import GlobalIndex
    from cover_id.training.projection import Projection

FORMAT_VERSION = 2
# Above this many references, keypoint votes come from visual-word lists on disk, not a nearest-neighbour
# index of every descriptor. Measured at 10,000 (scale.py, the 100 DVD photos): both 100 accepted-correct,
# 0 false accepts; the words' search stage about half the time and peak memory 580 against 1,364 MiB;
# the nearest-neighbour index's build slows past that (38 M descriptors at 50,000: ~1 h on 2 cores).
VOTER_NN_MAX = 5_000
WORDS_DIR = "voter_words"


def write_manifest(folder: Path, manifest: Mapping[str, Any], count: int) -> dict[str, Any]:
    """Write ``folder/manifest.json`` atomically and durably, with the format, ``count`` and the time
    filled in (what the database holds, like ``files``, is left out); returns what was written."""
    out = {k: v for k, v in manifest.items() if k not in VOLATILE}
    out.update(format=FORMAT_VERSION, count=count, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    with atomic_write(folder / "manifest.json") as tmp:
        tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False))
        fsync_path(tmp)
    return out


def pick_voter(n_refs: int, setting: str | None = None) -> str:
    """'nn' (a nearest-neighbour index of every reference descriptor) or 'words' (inverted lists)."""
    choice = (setting or "auto").lower()
    if choice not in ("auto", "nn", "words"):
        raise CoverIdError(f"vote_index must be auto, nn or words (got {setting!r})")
    if choice != "auto":
        return choice
    return "nn" if n_refs <= VOTER_NN_MAX else "words"


RESCORE = 2  # approximate compact index: this many times k candidates are re-scored with the full vectors
COMPACT_DEAD = 0.25  # compact automatically once this fraction of slots are tombstones
COMPACT_MIN_DEAD = 64  # ... and at least this many
CHECKPOINT_TAIL = 2000  # re-save the search checkpoints once this many slots were added since
VOLATILE = ("files", "count", "updated")  # manifest keys computed from the database


class FilesView(Mapping):
    """``manifest['files']``: filename -> sha256 of the live references, read from SQLite."""

    def __init__(self, store: "IndexStore") -> None:
        self._store = store

    def get(self, filename: str, default: Any = None) -> Any:
        for slot, sha in self._store._disk.query("SELECT slot, sha256 FROM refs WHERE filename = ?", (filename,)):
            if self._store._row_of_slot(slot) is not None:
                return sha
        for rec, _, _, sha in self._store._pending:
            if rec["filename"] == filename:
                return sha
        return default

    def __getitem__(self, filename: str) -> Any:
        out = self.get(filename, KeyError)
        if out is KeyError:
            raise KeyError(filename)
        return out

    def __iter__(self) -> Iterator[str]:
        return (r["filename"] for r in self._store.records)

    def __len__(self) -> int:
        return self._store.size

    def pop(self, key: str, default: Any = None) -> Any:  # the store tracks files itself
        return self.get(key, default)


class _Rows(Sequence):
    """A lazy, read-only sequence over a snapshot's rows."""

    def __init__(self, store: "IndexStore", kind: str) -> None:
        self._store = store
        self._kind = kind

    def __len__(self) -> int:
        return self._store.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._store._row(int(i), self._kind)

    def __iter__(self) -> Iterator[Any]:
        s = self._store
        if self._kind == "records":
            yield from s._disk.iter_records(s._live)
            yield from (p[0] for p in s._pending)
        else:
            for i in range(len(self)):
                yield self[i]


class VectorRows:
    """Array-like rows of a snapshot's vectors, read from the segment file on demand."""

    def __init__(self, store: "IndexStore", which: str) -> None:
        self._store = store
        self._which = which

    @property
    def shape(self) -> tuple[int, int]:
        return (self._store.size, self._store._vec_dim(self._which))

    ndim = 2

    @property
    def dtype(self) -> Any:
        import numpy as np

        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self._store.size

    def __getitem__(self, key: Any) -> "np.ndarray":
        import numpy as np

        if isinstance(key, tuple):
            return self[key[0]][(slice(None),) + key[1:]]
        if isinstance(key, (int, np.integer)):
            return self._store._vectors(np.array([int(key)]), self._which)[0]
        rows = np.arange(self._store.size)[key]
        return self._store._vectors(np.atleast_1d(rows), self._which)

    def __array__(self, dtype: Any = None, copy: Any = None) -> "np.ndarray":
        import numpy as np

        out = self._store._vectors(np.arange(self._store.size), self._which)
        return out if dtype is None else out.astype(dtype)

    @property
    def T(self) -> "np.ndarray":
        import numpy as np

        return np.asarray(self).T

    def astype(self, dtype: Any) -> "np.ndarray":
        import numpy as np

        return np.asarray(self).astype(dtype)


class _SnapshotVoter:
    """The shared vote index, seen through one snapshot's rows."""

    def __init__(self, store: "IndexStore", voter: Any) -> None:
        self._store = store
        self._voter = voter

    @property
    def n_refs(self) -> int:
        return self._store.size

    def votes(self, query: "Features") -> "np.ndarray":
        import numpy as np

        s = self._store
        with s._disk.search_lock.read():
            v = self._voter.votes(query)  # one entry per slot the voter covers
        live = s._live
        if len(live) == len(v) == s.size and (len(live) == 0 or int(live[-1]) == len(live) - 1):
            return v  # no tombstones, nothing pending: slots are rows
        out = np.zeros(s.size, np.float32)
        ok = live < len(v)
        out[: len(live)][ok] = v[live[ok]]
        return out

    def shortlist(self, query: "Features", top: int = 25) -> list[tuple[int, float]]:
        from cover_id.index.vote import top_votes

        return top_votes(self.votes(query), top)


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise CoverIdError(f"index not found: {path} (build one with `cover-id index --refs DIR --out {path}`)")
    if not manifest_path.is_file():
        raise CoverIdError(f"{path} is not a cover-id index (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        raise CoverIdError(f"{manifest_path}: corrupt manifest; rebuild with `cover-id index --rebuild`") from None
    fmt = int(manifest.get("format", 0))
    if fmt > FORMAT_VERSION:
        raise CoverIdError(f"{path} was written by a newer cover-id (format {fmt}); upgrade")
    if fmt < FORMAT_VERSION:
        refs = manifest.get("refs_root") or "REFS"
        raise CoverIdError(
            f"{path} is a format-{fmt} index; this cover-id reads format {FORMAT_VERSION}. Rebuild it with "
            f"`cover-id index --refs {refs} --out {path}` (an index run converts it; calibration is kept)"
        )
    return manifest


class IndexStore:
    """One snapshot of an index folder; :meth:`open` reads one, :meth:`save` commits changes."""

    def __init__(
        self,
        manifest: dict[str, Any],
        disk: "Disk",
        live: "np.ndarray",
        encoder_state: "dict[str, np.ndarray] | None" = None,
        projection: "Projection | None" = None,
        path: Path | None = None,
    ) -> None:
        self.manifest = {k: v for k, v in manifest.items() if k != "files"}
        self.manifest["files"] = FilesView(self)
        self._disk = disk
        self._live = live
        self.encoder_state = encoder_state or {}
        self.projection = projection
        self.path = path
        self._pending: list[tuple[dict[str, Any], "np.ndarray", "Features", str]] = []  # record, raw, feats, sha
        self._dead: list[int] = []  # slots removed in this snapshot, not saved yet
        self._saved_manifest = self._manifest_text()

    # ---- reading -----------------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> "IndexStore":
        """Open an index folder; a clear error if it is missing, partial, too old or too new."""
        import numpy as np

        from cover_id.index.disk import Disk
        from cover_id.training.projection import Projection

        path = Path(path)
        recover_dir(path)
        manifest = _read_manifest(path)
        try:
            state: dict[str, np.ndarray] = {}
            if (path / "encoder_state.npz").is_file():
                with np.load(path / "encoder_state.npz", allow_pickle=False) as z:
                    state = {k: z[k] for k in z.files}
            projection = None
            if (path / "projection.npz").is_file():
                with np.load(path / "projection.npz", allow_pickle=False) as z:
                    projection = Projection.from_arrays({k: z[k] for k in z.files})
            if not (path / "refs.db").is_file():
                raise OSError("refs.db is missing")
            enc_dim = int(manifest["encoder"].get("dim") or manifest["dim"])
            disk = Disk(path, enc_dim, projection.out_dim if projection else None)
            live = disk.live_slots()
        except (OSError, KeyError, ValueError) as exc:
            raise CoverIdError(
                f"{path}: index files are damaged ({exc}); rebuild with `cover-id index --rebuild`"
            ) from None
        store = cls(manifest, disk, live, state, projection, path)
        store._global()  # the candidate index is needed by every query: load it now
        return store

    def _manifest_text(self) -> str:
        return json.dumps({k: v for k, v in self.manifest.items() if k not in VOLATILE}, sort_keys=True, default=str)

    @property
    def size(self) -> int:
        return int(len(self._live)) + len(self._pending)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def encoder_spec(self) -> dict[str, Any]:
        return self.manifest["encoder"]

    @property
    def refs_root(self) -> Path:
        return Path(self.manifest.get("refs_root", "."))

    @property
    def records(self) -> Sequence[dict[str, Any]]:
        return _Rows(self, "records")

    @property
    def features(self) -> "Sequence[Features]":
        return _Rows(self, "features")

    @property
    def embeddings(self) -> VectorRows:
        """Index-space vectors (after the projection head, if any), read on demand."""
        return VectorRows(self, "emb")

    @property
    def raw_embeddings(self) -> VectorRows:
        """Encoder vectors before the projection head."""
        return VectorRows(self, "raw")

    @property
    def dead(self) -> int:
        """Tombstoned slots on disk (space that :meth:`compact` gives back)."""
        return int(self._disk.query("SELECT COUNT(*) FROM refs WHERE deleted = 1")[0][0])

    def _vec_dim(self, which: str) -> int:
        if which == "emb":
            return self.dim
        return int(self.encoder_spec.get("dim") or self.dim)

    def _row(self, i: int, kind: str) -> Any:
        n = len(self._live)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(i)
        if i >= n:
            rec, _, feats, _ = self._pending[i - n]
            return rec if kind == "records" else feats
        slot = int(self._live[i])
        return self._disk.record(slot) if kind == "records" else self._disk.features(slot)

    def _vectors(self, rows: "np.ndarray", which: str) -> "np.ndarray":
        import numpy as np

        rows = np.asarray(rows, np.int64)
        rows = np.where(rows < 0, rows + self.size, rows)
        n = len(self._live)
        out = np.empty((len(rows), self._vec_dim(which)), np.float32)
        stored = rows < n
        if stored.any():
            slots = self._live[rows[stored]]
            if which == "emb" and self.projection is None:
                which_disk = "raw"
            else:
                which_disk = which
            out[stored] = self._disk.vectors(slots, which_disk)
        for j in np.flatnonzero(~stored):
            raw = self._pending[int(rows[j]) - n][1].reshape(1, -1)
            out[j] = self.embed(raw)[0] if which == "emb" else raw[0]
        return out

    def _row_of_slot(self, slot: int) -> int | None:
        import numpy as np

        j = int(np.searchsorted(self._live, slot))
        return j if j < len(self._live) and int(self._live[j]) == slot else None

    def keypoint_counts(self) -> "np.ndarray":
        import numpy as np

        stored = self._disk.keypoint_counts(self._live)
        return np.concatenate([stored, np.array([len(p[2]) for p in self._pending], np.int64)])

    def image_path(self, i: int) -> Path:
        """Where reference ``i``'s image lives (stored filenames are relative to refs_root)."""
        name = self.records[i]["filename"]
        p = Path(name)
        return p if p.is_absolute() else self.refs_root / p

    def index_of(self, ref_id: str) -> int | None:
        for slot in self._disk.slots_of_id(ref_id):
            row = self._row_of_slot(slot)
            if row is not None:
                return row
        for j, p in enumerate(self._pending):
            if p[0]["id"] == ref_id:
                return len(self._live) + j
        return None

    # ---- items and their views ---------------------------------------------------
    # An item may have several reference images ("views"): each is a row of its own (own id, own
    # filename, own keypoints and vector) whose record names the item (``item``: the item's id,
    # which is also the id of its primary view). A reference without ``item`` is an item of one view.
    @property
    def has_views(self) -> bool:
        """Whether any live row is an extra view of another item (else items and rows are the same)."""
        if any(p[0].get("item") not in (None, p[0]["id"]) for p in self._pending):
            return True
        try:
            rows = self._disk.query("SELECT slot FROM refs WHERE item IS NOT NULL AND item != id AND deleted = 0")
        except sqlite3.Error:  # an index opened read-only before the item column existed
            return False
        return any(self._row_of_slot(int(s)) is not None for (s,) in rows)

    def item_keys(self, rows: "Sequence[int]") -> list[str]:
        """The item each row is a view of (its own id for a reference of one view)."""
        import numpy as np

        n = len(self._live)
        slots = {int(self._live[r]): r for r in rows if 0 <= r < n}
        found: dict[int, str] = {}
        if slots:
            marks = ",".join("?" * len(slots))
            for slot, key in self._disk.query(
                f"SELECT slot, COALESCE(item, id) FROM refs WHERE slot IN ({marks})", tuple(slots)
            ):
                found[slots[int(slot)]] = key
        out = []
        for r in rows:
            if r in found:
                out.append(found[r])
            else:
                rec = self.records[int(np.int64(r))]
                out.append(rec.get("item") or rec["id"])
        return out

    def view_rows(self) -> set[int]:
        """Rows that are extra views of an item (not its primary)."""
        out = set()
        for (slot,) in self._disk.query("SELECT slot FROM refs WHERE item IS NOT NULL AND item != id AND deleted = 0"):
            row = self._row_of_slot(int(slot))
            if row is not None:
                out.add(row)
        n = len(self._live)
        out.update(n + j for j, p in enumerate(self._pending) if p[0].get("item") not in (None, p[0]["id"]))
        return out

    def views_of(self, item: str) -> list[int]:
        """Rows of every view of ``item`` (the primary first, then in the order they were added)."""
        rows: list[int] = []
        primary = self.index_of(item)
        if primary is not None:
            rows.append(primary)
        for (slot,) in self._disk.query("SELECT slot FROM refs WHERE item = ? AND deleted = 0 ORDER BY slot", (item,)):
            row = self._row_of_slot(int(slot))
            if row is not None and row not in rows:
                rows.append(row)
        n = len(self._live)
        rows += [n + j for j, p in enumerate(self._pending) if p[0].get("item") == item and p[0]["id"] != item]
        return rows

    def text_search(self, query: str, limit: int = 50) -> list[int]:
        """Up to ``limit`` rows whose catalog strings contain every word of ``query`` (as word prefixes), best first.

        SQLite FTS5 over every string field of the records (name, artist, set code, ...), kept in
        step with every write; without FTS5 a case-insensitive scan of the records. Rows are
        views: an item with several images may come more than once (see ``server.collection.item_rows``).
        """
        import re

        words = re.findall(r"\w+", query.lower())
        if not words or limit <= 0:
            return []
        rows: list[int] = []
        if getattr(self._disk, "has_fts", False):
            match = " ".join('"' + w + '"*' for w in words)  # \w+ words: no quote to escape
            for (slot,) in self._disk.query(
                "SELECT rowid FROM refs_fts WHERE refs_fts MATCH ? ORDER BY rank LIMIT ?", (match, int(limit))
            ):
                row = self._row_of_slot(int(slot))
                if row is not None:
                    rows.append(row)
            scan = range(len(self._live), self.size)  # pending rows are not in the table yet
        else:
            scan = range(self.size)
        for i in scan:
            text = " ".join(_strings(self.records[i])).lower()
            if all(w in text for w in words):
                rows.append(i)
        return rows[:limit]

    # ---- search ------------------------------------------------------------------
    def _global(self) -> "GlobalIndex":
        """The shared compact index: checkpoint plus the slots added since."""
        import numpy as np

        from cover_id.index.search import load_global

        disk = self._disk
        g = disk.shared.get("global")
        if g is not None:
            return g
        with disk.search_lock.write():
            g = disk.shared.get("global")
            if g is None:
                g = load_global(disk.path)
                tail = np.arange(g.covered, disk.next_slot(), dtype=np.int64)
                for chunk in disk.all_vectors(tail, "emb" if self.projection is not None else "raw"):
                    g.add(chunk)
                disk.shared["global"] = g
            return g

    @property
    def search_is_stale(self) -> bool:
        """Whether the compact candidate index is of an older kind (see :func:`search.is_stale`)."""
        from cover_id.index.search import is_stale

        return is_stale(self.manifest.get("search"), self.size)

    def relearn_search(self, show: bool = False) -> None:
        """Re-learn the compact basis and index from the stored full vectors (no feature extraction).

        Writes the FAISS file, ``global.npz`` naming it, then the manifest, each atomically;
        readers of this folder keep the old index until they reopen it (the checkpoint describes itself, so a crash
        between the two files leaves a working index that the next run upgrades again).
        """
        from cover_id.index.build import build_global

        if self.path is None:
            raise CoverIdError("re-learning the compact vectors needs a saved index")
        self.save()  # pending rows first, so the new index covers them
        g = build_global(self._disk, self.manifest, self.projection, show)
        with self._disk.search_lock.write():
            self._disk.shared["global"] = g
        self._write_manifest(Path(self.path))

    def faiss_index(self) -> Any:
        return self._global().index

    def search(self, vectors: "np.ndarray", k: int) -> "tuple[np.ndarray, np.ndarray]":
        """Top-k (scores, rows) for each vector; -1 where fewer rows exist.

        Scores are cosines of the index-space vectors. Where the compact index is
        approximate (whitened, quantised), its best ``RESCORE * k`` are re-scored with
        the stored full vectors (read for those rows only) and the best ``k`` kept.
        """
        import numpy as np

        vectors = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, np.float32)))
        n_q = len(vectors)
        k = max(1, min(int(k), self.size))
        if self.size == 0:
            return np.zeros((n_q, 0), np.float32), np.zeros((n_q, 0), np.int64)
        g = self._global()
        kk = k if g.exact else min(self.size, RESCORE * k)
        out_s = np.full((n_q, kk), -np.inf, np.float32)
        out_i = np.full((n_q, kk), -1, np.int64)
        if len(self._live):
            want = kk
            while True:
                with self._disk.search_lock.read():
                    total = g.index.ntotal
                    scores, slots = g.search(vectors, want)
                done = True
                for q in range(n_q):
                    found = [(s, self._row_of_slot(int(x))) for s, x in zip(scores[q], slots[q]) if x >= 0]
                    rows = [(s, r) for s, r in found if r is not None][:kk]
                    if len(rows) < min(kk, len(self._live)) and want < total:
                        done = False
                    for j, (s, r) in enumerate(rows):
                        out_s[q, j], out_i[q, j] = s, r
                if done:
                    break
                want = min(total, want * 4)
            if not g.exact:  # each candidate's full vector read once, however many views found it
                cands = np.unique(out_i[out_i >= 0])
                full = self._vectors(cands, "emb")
                for q in range(n_q):
                    rows = out_i[q][out_i[q] >= 0]
                    out_s[q, : len(rows)] = full[np.searchsorted(cands, rows)] @ vectors[q]
        if self._pending:  # not yet committed: scored exactly, merged in
            n = len(self._live)
            pend = self.embed(np.stack([p[1] for p in self._pending]))
            ps = g.project(vectors) @ g.project(pend).T if g.exact else vectors @ pend.T
            out_s = np.concatenate([out_s, ps], axis=1)
            out_i = np.concatenate([out_i, np.arange(n, n + len(pend))[None, :].repeat(n_q, 0)], axis=1)
        order = np.argsort(-out_s, axis=1, kind="stable")[:, :k]
        out_s, out_i = np.take_along_axis(out_s, order, 1), np.take_along_axis(out_i, order, 1)
        out_i[~np.isfinite(out_s)] = -1
        return out_s, out_i

    @property
    def appended(self) -> int:
        """How many references were ever appended to this folder (the next slot): every add or changed file
        counts, so it tells a collection that changed from one of the same size."""
        return self._disk.next_slot()

    @property
    def shared(self) -> dict[str, Any]:
        """Structures worth keeping across the snapshots of this open folder (search indexes, caches)."""
        return self._disk.shared

    @property
    def has_voter(self) -> bool:
        return bool(self.manifest.get("voter", True)) and 0 < self.size

    def voter(self) -> _SnapshotVoter:
        """The keypoint-vote shortlister (loaded on first use: checkpoint plus later slots)."""

        from cover_id.index.vote import DescriptorVoter, WordVoter

        disk = self._disk
        v = disk.shared.get("voter")
        if v is None:
            with disk.search_lock.write():
                v = disk.shared.get("voter")
                if v is None:
                    ck = disk.path / "voter.faiss"
                    end = disk.next_slot()
                    if self.manifest.get("voter_kind") == "words" and (disk.path / WORDS_DIR).is_dir():
                        v = WordVoter.load(disk.path / WORDS_DIR)
                    elif ck.is_file():
                        v = DescriptorVoter.load(str(ck), int(self.manifest.get("voter_covered", 0)))
                    else:
                        v = DescriptorVoter()
                        v.fit([disk.features(s) for s in range(end)])
                    later = [disk.features(s) for s in range(v.n_refs, end)]  # added after the checkpoint
                    if later:
                        v.add(later)
                    disk.shared["voter"] = v
        return _SnapshotVoter(self, v)

    # ---- encoders ----------------------------------------------------------------
    def create_encoder(self, options: dict[str, Any] | None = None) -> "Encoder":
        """The encoder that built this index, with its learned state loaded."""
        from cover_id.encoders import encoder_from_spec

        encoder = encoder_from_spec(self.encoder_spec, options)
        if self.encoder_state and encoder.fittable:
            encoder.load_state(self.encoder_state)
        return encoder

    def embed(self, raw: "np.ndarray") -> "np.ndarray":
        """Encoder vectors -> index space (applies the projection head, if any)."""
        return self.projection.apply(raw) if self.projection is not None else raw

    def check_compatible(self, spec: dict[str, Any], projection: "Projection | None", check_head: bool = True) -> None:
        """Refuse to mix vectors from another encoder, dimension or head."""
        mine = self.encoder_spec
        how = "rebuild it with `cover-id index --rebuild` (or write to another --out)"
        if (mine.get("name"), mine.get("params")) != (spec.get("name"), spec.get("params")):
            raise IndexMismatchError(
                f"index {self.path} was built with encoder {describe_spec(mine)}, not {describe_spec(spec)}; {how}"
            )
        if mine.get("weights") != spec.get("weights"):
            raise IndexMismatchError(f"index {self.path} was built with other {mine.get('name')} weights; {how}")
        if not check_head:
            return
        have = self.manifest.get("projection") or {}
        want = {"fingerprint": projection.fingerprint} if projection else {}
        if have.get("fingerprint") != want.get("fingerprint"):
            raise IndexMismatchError(f"index {self.path} was built with a different projection head; {how}")

    # ---- changing (pending until save) ---------------------------------------------
    def add(self, record: dict[str, Any], raw: "np.ndarray", features: "Features", sha256: str) -> int:
        """Append one reference from its encoder vector; returns its row (committed by :meth:`save`)."""
        import numpy as np

        if self.index_of(record["id"]) is not None:
            raise CoverIdError(f"a reference with id '{record['id']}' already exists")
        self._pending.append((dict(record), np.asarray(raw, np.float32).reshape(-1), features, sha256))
        return self.size - 1

    def remove(self, ref_id: str) -> dict[str, Any]:
        """Drop one reference by id; returns its record (committed by :meth:`save`)."""
        import numpy as np

        i = self.index_of(ref_id)
        if i is None:
            raise CoverIdError(f"no reference with id '{ref_id}'")
        n = len(self._live)
        if i >= n:
            return self._pending.pop(i - n)[0]
        record = self.records[i]
        self._dead.append(int(self._live[i]))
        self._live = np.delete(self._live, i)
        return record

    def copy(self) -> "IndexStore":
        """A snapshot that can be changed without disturbing readers of this one (shares the files)."""
        import copy

        other = IndexStore.__new__(IndexStore)
        other.__dict__.update(self.__dict__)
        other.manifest = {k: copy.deepcopy(v) for k, v in self.manifest.items() if k != "files"}
        other.manifest["files"] = FilesView(other)
        other._live = self._live.copy()
        other._pending = list(self._pending)
        other._dead = list(self._dead)
        return other

    # ---- writing -----------------------------------------------------------------
    def save(self, path: Path | None = None) -> Path:
        """Commit pending adds and removes (one transaction) and the manifest, if changed."""
        import numpy as np

        from cover_id.index.search import remove_orphans

        target = Path(path or self.path or ".")
        if self.path is None or target.resolve() != Path(self.path).resolve():
            return self._rewrite(target)
        clean_stale(target)
        remove_orphans(target)  # FAISS files of an interrupted checkpoint
        if self._pending or self._dead:
            disk = self._disk
            items = [
                (rec, raw, self.embed(raw.reshape(1, -1))[0] if self.projection else None, feats, sha, None)
                for rec, raw, feats, sha in self._pending
            ]
            with disk.transaction() as db:
                slots = disk.append(db, items) if items else []
                if self._dead:
                    db.executemany("UPDATE refs SET deleted = 1 WHERE slot = ?", [(s,) for s in self._dead])
            self._index_new(slots, [p[1] for p in self._pending], [p[2] for p in self._pending])
            self._live = np.concatenate([self._live, np.asarray(slots, np.int64)])
            self._pending, self._dead = [], []
        text = self._manifest_text()
        if text != self._saved_manifest:
            self._write_manifest(target)
        self.maintain()
        return target

    def _index_new(self, slots: list[int], raws: "list[np.ndarray]", feats: "list[Features]") -> None:
        """Add committed slots to the shared in-memory search structures (in slot order)."""
        import numpy as np

        if not slots:
            return
        disk = self._disk
        g = disk.shared.get("global")
        v = disk.shared.get("voter")
        with disk.search_lock.write():
            if g is not None and g.covered == slots[0]:
                g.add(self.embed(np.stack(raws)))
            elif g is not None:
                disk.shared.pop("global", None)  # another writer got in between: reload on next use
            if v is not None and v.n_refs == slots[0]:
                v.add(list(feats))
            elif v is not None:
                disk.shared.pop("voter", None)

    def _write_manifest(self, target: Path) -> None:
        out = write_manifest(target, self.manifest, self.size)
        self.manifest.update(count=out["count"], updated=out["updated"])
        self._saved_manifest = self._manifest_text()

    def maintain(self) -> None:
        """Compact past the tombstone threshold; refresh search checkpoints past the tail limit."""
        dead = self.dead
        total = dead + len(self._live)
        if dead >= COMPACT_MIN_DEAD and dead >= COMPACT_DEAD * total:
            self.compact()
            return
        g = self._disk.shared.get("global")
        if g is not None and self._checkpoint_covered("global.npz") + CHECKPOINT_TAIL <= g.covered:
            self.checkpoint()

    def _checkpoint_covered(self, name: str) -> int:
        import numpy as np

        try:
            with np.load(self._disk.path / name, allow_pickle=False) as z:
                key = "covered" if "covered" in z.files else "voter_n_refs"
                return int(z[key][0])
        except (OSError, KeyError, ValueError):
            return 0

    def checkpoint(self) -> None:
        """Write the in-memory compact index to its checkpoint files (see :func:`search.save_global`)."""
        from cover_id.index.search import save_global

        disk = self._disk
        with disk.search_lock.read():  # the vote index is only rewritten by compaction (it can be large)
            g = disk.shared.get("global")
            if g is not None:
                save_global(disk.path, g)

    def compact(self) -> None:
        """Rewrite the folder without tombstones; this snapshot moves to the new files."""
        if self.path is None:
            raise CoverIdError("compact needs a saved index")
        self._rewrite(Path(self.path))

    def _rewrite(self, target: Path, projection: Any = "same") -> Path:
        """Write this snapshot's rows into a fresh folder, swap it in at ``target``, move there."""
        from cover_id.index.build import write_store

        staged = staging_dir(target)
        try:
            write_store(staged, self, projection)
            publish_dir(staged, target)
        except BaseException:
            discard(staged)
            raise
        new = IndexStore.open(target)
        self.__dict__.update(new.__dict__)
        self.manifest["files"] = FilesView(self)
        return target


def describe_spec(spec: dict[str, Any]) -> str:
    """'clip (ViT-B-32, laion2b_s34b_b79k)' — for messages."""
    params = spec.get("params") or {}
    inner = ", ".join(str(v) for v in params.values() if v is not None and not isinstance(v, (dict, list)))
    return f"'{spec.get('name')}'" + (f" ({inner})" if inner else "")


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a record (nested lists and objects too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "cover_url":
                yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
