"""Candidate search over compact global vectors.

The index-space vectors (16,384-d VLAD, or 512-d CLIP) are projected onto an
orthonormal basis of the references' span learned at build time (at most
``COMPACT_DIM`` dimensions, from up to ``BASIS_SAMPLE`` references). While the
collection is no larger than the basis, inner products with every reference
are exact; beyond, the basis keeps the directions the references vary in
most. The compact vectors go into FAISS: exact inner product while small,
IVF-PQ from ``IVFPQ_FROM`` references, chosen automatically and recorded in
the manifest. FAISS ids are reference slots (stable across deletes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faiss
import numpy as np

COMPACT_DIM = 256
BASIS_SAMPLE = 2048
IVFPQ_FROM = 100_000


def learn_basis(sample: np.ndarray, dim: int = COMPACT_DIM) -> np.ndarray | None:
    """(r, D) orthonormal rows spanning ``sample``'s main directions; None if D is small."""
    x = np.ascontiguousarray(sample, np.float32)
    if x.shape[1] <= dim:
        return None
    gram = (x @ x.T).astype(np.float64)
    vals, vecs = np.linalg.eigh(gram)
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    keep = vals > max(vals[0], 1e-12) * 1e-7
    r = int(min(dim, keep.sum()))
    basis = (x.T.astype(np.float64) @ vecs[:, :r]) / np.sqrt(vals[:r])[None, :]
    return np.ascontiguousarray(basis.T, np.float32)


def pick_kind(n: int) -> str:
    return "ivfpq" if n >= IVFPQ_FROM else "flat"


class GlobalIndex:
    """Compact vectors in FAISS, ids = slots; ``covered`` slots were added in order."""

    def __init__(self, basis: np.ndarray | None, index: Any, covered: int, kind: str) -> None:
        self.basis = basis
        self.index = index
        self.covered = covered
        self.kind = kind

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(vectors, np.float32)
        return v if self.basis is None else np.ascontiguousarray(v @ self.basis.T)

    @classmethod
    def build(
        cls,
        basis: np.ndarray | None,
        dim: int,
        n_total: int,
        chunks: Iterable[np.ndarray],
        train: np.ndarray | None = None,
    ) -> "GlobalIndex":
        """Index every slot 0..n_total-1 (chunks in slot order, index-space vectors)."""
        d = dim if basis is None else int(basis.shape[0])
        kind = pick_kind(n_total)
        if kind == "ivfpq":
            nlist = int(min(65536, max(256, 4 * np.sqrt(n_total))))
            m = max(1, min(64, d // 8))
            while d % m:
                m -= 1
            quantizer = faiss.IndexFlatIP(d)
            index: Any = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = 48
            sample = train if train is not None else np.zeros((0, dim), np.float32)
            proj = sample if basis is None else sample @ basis.T
            index.train(np.ascontiguousarray(proj, np.float32))
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        out = cls(basis, index, 0, kind)
        for chunk in chunks:
            out.add(chunk)
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

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": faiss.serialize_index(self.index),
            "covered": np.array([self.covered], np.int64),
            "kind": np.array(self.kind),
        }
        if self.basis is not None:
            out["basis"] = self.basis
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "GlobalIndex":
        index = faiss.deserialize_index(np.asarray(state["index"], np.uint8))
        basis = np.asarray(state["basis"], np.float32) if "basis" in state else None
        return cls(basis, index, int(state["covered"][0]), str(state["kind"]))

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "dim": self.dim, "basis": self.basis is not None, "whiten": False}
