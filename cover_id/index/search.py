"""Candidate search over compact global vectors.

The index-space vectors (16,384-d VLAD, or 512-d CLIP) are projected onto an
orthonormal basis of the references' span learned at build time (at most
``COMPACT_DIM`` dimensions, from up to ``BASIS_SAMPLE`` references).

- While the basis spans every reference (all of them in the sample, no more of
  them than ``COMPACT_DIM``), inner products are exact: float32, flat, no whitening.
- Beyond, the basis keeps the directions the references vary in most, and each
  component is scaled by eigenvalue^``WHITEN_POWER`` and the result L2-normalised
  (PCA whitening). Stored with ``SQ_BITS``-bit scalar quantisation: flat below
  ``IVF_FROM`` references, IVF beyond. On the 10,000-reference scale index the DVD
  photos find their cover in the top 15 for 80 % (the full 16,384-d vectors: 81 %;
  the unwhitened 256-d basis before: 37 %); 4-bit codes cost nothing measurable
  against float32 (README, Scale).

The kind is chosen automatically (:func:`pick_kind`), recorded in the manifest
(:meth:`GlobalIndex.describe`) and in the checkpoint itself, so an index opens
with what it was built with. ``COMPACT_VERSION`` names the current recipe: an
index whose manifest records an older one is re-learned from its stored full
vectors by ``cover-id index`` (no features are re-extracted). FAISS ids are
reference slots (stable across deletes).

On disk (:func:`save_global`, :func:`load_global`): ``global.npz`` holds the small
arrays and names the FAISS file beside it (``global-<random>.faiss``, a new name at
every write), which opens with one ``faiss.read_index``. Checkpoints written before
kept the FAISS bytes inside ``global.npz``; they still open, and the next write
converts them.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

COMPACT_VERSION = 2  # 1: 256-d unwhitened float32 (or IVF-PQ); 2: up to 1536-d whitened, 4-bit
COMPACT_DIM = 1536
BASIS_SAMPLE = 4096  # references the basis is learned from (the Gram matrix is this square)
WHITEN_POWER = -0.25
SQ_BITS = 4  # scalar quantisation of the whitened components: 1536-d -> 768 bytes a reference
_QTYPES = {4: faiss.ScalarQuantizer.QT_4bit, 6: faiss.ScalarQuantizer.QT_6bit, 8: faiss.ScalarQuantizer.QT_8bit}
IVF_FROM = 100_000
IVF_NPROBE = 48
IVF_TRAIN = 100_000  # references the IVF lists are trained on (read in chunks)
CHECKPOINT = "global.npz"  # basis, scale, kind, version, covered, and the name of the FAISS file
FAISS_PREFIX = "global-"  # FAISS files are global-<random>.faiss: a new name for every write
_SAVING = threading.Lock()  # a save and an orphan cleanup of this process never interleave


def learn_basis(sample: np.ndarray, dim: int = COMPACT_DIM) -> np.ndarray | None:
    """(r, D) orthonormal rows spanning ``sample``'s main directions; None if D is small."""
    basis, _ = learn_projection(sample, dim, whiten=False)
    return basis


def learn_projection(
    sample: np.ndarray, dim: int = COMPACT_DIM, whiten: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(basis (r, D) orthonormal rows, per-component scale or None); (None, None) if D <= dim.

    The scale is eigenvalue^WHITEN_POWER (normalised to mean 1) when ``whiten``.
    """
    x = np.ascontiguousarray(sample, np.float32)
    if x.shape[1] <= dim:
        return None, None
    gram = (x @ x.T).astype(np.float64)
    vals, vecs = np.linalg.eigh(gram)
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    keep = vals > max(vals[0], 1e-12) * 1e-7
    r = int(min(dim, keep.sum()))
    basis = (x.T @ vecs[:, :r].astype(np.float32)) / np.sqrt(vals[:r]).astype(np.float32)[None, :]
    scale = None
    if whiten:
        s = vals[:r] ** WHITEN_POWER
        scale = np.asarray(s / s.mean(), np.float32)
    return np.ascontiguousarray(basis.T, np.float32), scale


def exact_for(n_refs: int, has_basis: bool) -> bool:
    """Whether the compact index holds exact inner products (float32, no whitening).

    True while a basis can span every reference (they all fit in the sample and in
    ``COMPACT_DIM``), and for vectors small enough to need no basis below ``IVF_FROM``.
    """
    if not has_basis:
        return n_refs < IVF_FROM
    return n_refs <= min(BASIS_SAMPLE, COMPACT_DIM)


def pick_kind(n: int, exact: bool = False) -> str:
    """'flat' (exact float32), 'sq4' (flat, 4-bit codes) or 'ivfsq4' (IVF lists of them)."""
    if exact:
        return "flat"
    return f"ivfsq{SQ_BITS}" if n >= IVF_FROM else f"sq{SQ_BITS}"


class GlobalIndex:
    """Compact vectors in FAISS, ids = slots; ``covered`` slots were added in order."""

    def __init__(
        self,
        basis: np.ndarray | None,
        index: Any,
        covered: int,
        kind: str,
        scale: np.ndarray | None = None,
        version: int = COMPACT_VERSION,
        learned_from: int = 0,
    ) -> None:
        self.basis = basis
        self.scale = scale
        self.index = index
        self.covered = covered
        self.kind = kind
        self.version = version
        self.learned_from = learned_from

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def exact(self) -> bool:
        """Whether scores are exact inner products of the index-space vectors."""
        return self.kind == "flat" and self.scale is None

    @property
    def whiten(self) -> bool:
        return self.scale is not None

    def project(self, vectors: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(vectors, np.float32)
        if self.basis is None:
            return v
        # basis @ v.T, not v @ basis.T: with a few rows against a large basis (1,536 x 16,384: 96 MiB) the
        # matrix product then streams the basis once instead of packing a copy of it (measured 2x faster)
        p = np.ascontiguousarray((self.basis @ v.T).T)
        if self.scale is not None:
            p *= self.scale[None, :]
            p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(p, np.float32)

    @classmethod
    def build(
        cls,
        basis: np.ndarray | None,
        dim: int,
        n_total: int,
        chunks: Iterable[np.ndarray],
        train: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        kind: str | None = None,
        learned_from: int = 0,
        advance: Callable[[int], Any] | None = None,
    ) -> "GlobalIndex":
        """Index every slot 0..n_total-1 (chunks in slot order, index-space vectors).

        ``train``: compact-space vectors (already :meth:`project`-ed) the quantisers are
        trained on (8-bit ranges, IVF lists); ``advance(rows)`` is called after each chunk.
        """
        d = dim if basis is None else int(basis.shape[0])
        kind = kind or pick_kind(n_total, exact=scale is None)
        out = cls(basis, None, 0, kind, scale, COMPACT_VERSION, learned_from)
        sample = np.ascontiguousarray(train, np.float32) if train is not None else np.zeros((0, d), np.float32)
        if kind.startswith("ivfsq"):
            nlist = int(min(65536, max(64, 4 * np.sqrt(n_total)), max(1, len(sample) // 39)))
            quantizer = faiss.IndexFlatIP(d)
            index: Any = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, _QTYPES[int(kind[5:])], faiss.METRIC_INNER_PRODUCT
            )
            index.cp.seed = 0
            index.train(sample)
            index.nprobe = IVF_NPROBE
        elif kind == "ivfpq":  # version 1, kept so old benchmarks can still build one
            nlist = int(min(65536, max(256, 4 * np.sqrt(n_total))))
            m = max(1, min(64, d // 8))
            while d % m:
                m -= 1
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = IVF_NPROBE
            index.train(sample)
        elif kind.startswith("sq"):
            sq = faiss.IndexScalarQuantizer(d, _QTYPES[int(kind[2:])], faiss.METRIC_INNER_PRODUCT)
            sq.train(sample if len(sample) else np.zeros((1, d), np.float32))
            index = faiss.IndexIDMap2(sq)
        elif kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        else:
            raise ValueError(f"unknown compact index kind {kind!r}")
        out.index = index
        for chunk in chunks:
            out.add(chunk)
            if advance is not None:
                advance(len(chunk))
        return out

    def add(self, vectors: np.ndarray) -> None:
        """Append the next slots' index-space vectors."""
        if not len(vectors):
            return
        ids = np.arange(self.covered, self.covered + len(vectors), dtype=np.int64)
        self.index.add_with_ids(self.project(vectors), ids)
        self.covered += len(vectors)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = int(min(max(k, 1), max(self.index.ntotal, 1)))
        return self.index.search(self.project(vectors), k)

    def state(self, index_file: str | None = None) -> dict[str, Any]:
        """The checkpoint arrays; the FAISS index as bytes, or only its file name if ``index_file``."""
        out: dict[str, Any] = {
            "covered": np.array([self.covered], np.int64),
            "kind": np.array(self.kind),
            "version": np.array([self.version, self.learned_from], np.int64),
        }
        if index_file is None:
            out["index"] = faiss.serialize_index(self.index)
        else:
            out["index_file"] = np.array(index_file)
        if self.basis is not None:
            out["basis"] = self.basis
        if self.scale is not None:
            out["scale"] = self.scale
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], folder: Path | None = None) -> "GlobalIndex":
        """From :meth:`state`'s arrays; a named FAISS file is read from ``folder`` (one read)."""
        if "index" in state:  # written before the FAISS index got its own file
            index = faiss.deserialize_index(np.asarray(state["index"], np.uint8))
        else:
            if folder is None:
                raise ValueError("this checkpoint names a FAISS file: pass its folder")
            index = faiss.read_index(str(Path(folder) / str(state["index_file"])))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = IVF_NPROBE
        basis = np.asarray(state["basis"], np.float32) if "basis" in state else None
        scale = np.asarray(state["scale"], np.float32) if "scale" in state else None
        version, learned = (int(x) for x in state["version"]) if "version" in state else (1, 0)
        return cls(basis, index, int(state["covered"][0]), str(state["kind"]), scale, version, learned)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "dim": self.dim,
            "basis": self.basis is not None,
            "whiten": self.whiten,
            "version": self.version,
            "learned_from": self.learned_from,
        }


def save_global(folder: Path, g: GlobalIndex) -> str:
    """Checkpoint ``g`` in ``folder``: a new FAISS file, then ``global.npz`` naming it, then cleanup.

    Each file is written atomically, so at every moment ``global.npz`` names a complete
    FAISS file: a crash before the npz is replaced leaves the previous pair (plus an orphan
    that the next save removes). Readers that loaded the old pair keep what they read.
    Returns the new FAISS file's name.
    """
    from cover_id.store_io import atomic_write, fsync_path, save_npz

    folder = Path(folder)
    name = f"{FAISS_PREFIX}{secrets.token_hex(8)}.faiss"
    with _SAVING:
        with atomic_write(folder / name) as tmp:
            faiss.write_index(g.index, str(tmp))
            fsync_path(tmp)
        save_npz(folder / CHECKPOINT, g.state(index_file=name))
        _remove_orphans(folder)
    return name


def load_global(folder: Path) -> GlobalIndex:
    """Open ``folder``'s checkpoint (either layout); the FAISS file is read once."""
    folder = Path(folder)
    for attempt in range(3):
        with np.load(folder / CHECKPOINT, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        try:
            return GlobalIndex.from_state(state, folder)
        except RuntimeError:
            # a writer replaced the pair between our two reads and removed the old file: read again
            if attempt == 2 or "index_file" not in state or (folder / str(state["index_file"])).exists():
                raise
    raise AssertionError("unreachable")


def remove_orphans(folder: Path) -> list[Path]:
    """Remove FAISS files (and their unfinished temporaries) that ``global.npz`` does not name.

    For the one writer of a folder (another process saving there at the same moment
    could lose its new file); saves of this process wait for it.
    """
    with _SAVING:
        return _remove_orphans(Path(folder))


def _remove_orphans(folder: Path) -> list[Path]:
    keep = None
    try:
        with np.load(folder / CHECKPOINT, allow_pickle=False) as z:
            keep = str(z["index_file"]) if "index_file" in z.files else None
    except (OSError, ValueError):
        return []  # no readable checkpoint: leave everything as it is
    gone = []
    for p in [*folder.glob(f"{FAISS_PREFIX}*.faiss"), *folder.glob(f".{FAISS_PREFIX}*.faiss.*.tmp")]:
        if p.name != keep:
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def is_stale(search: dict[str, Any] | None, n_refs: int) -> bool:
    """Whether a manifest's compact index should be re-learned from the stored vectors.

    Older recipe (``version`` below ``COMPACT_VERSION``), or a basis learned from a
    collection less than half the size it is now and smaller than ``BASIS_SAMPLE``.
    """
    if not search:
        return n_refs > 0
    if int(search.get("version", 1)) < COMPACT_VERSION:
        return True
    learned = int(search.get("learned_from", 0))
    return bool(search.get("basis")) and learned < min(BASIS_SAMPLE, n_refs / 2)
