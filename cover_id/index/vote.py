"""Keypoint-vote shortlist: references ranked by how many query descriptors they hold.

:class:`DescriptorVoter` is the complement of the global vectors: every
reference descriptor goes into a FAISS index (exact for small collections,
IVF-SQ8 beyond), each query descriptor votes for the references holding its
nearest neighbours. On cluttered whole phone photos it ranks the right cover
first where VLAD alone does not reach 100 % even at rank 25.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from cover_id.encoders.local import _sample_descriptors
from cover_id.features import Features, desc_float


class DescriptorVoter:
    """Shortlist references by nearest-neighbour votes of the query's descriptors.

    Each query descriptor votes once for every reference among its ``k``
    nearest reference descriptors whose distance passes a ratio test against
    the ``k``-th neighbour. Exact search below ``ivf_above`` descriptors,
    IVF with 8-bit scalar quantisation above.
    """

    def __init__(
        self,
        k: int = 5,
        ratio: float = 0.8,
        nprobe: int = 4,
        ivf_above: int = 60_000,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.ratio = ratio
        self.nprobe = nprobe
        self.ivf_above = ivf_above
        self.seed = seed
        self.index: faiss.Index | None = None
        self.slots = np.zeros(0, np.int64)
        self.extra: faiss.Index | None = None  # references added to a memory-mapped (read-only) index
        self._mapped = False
        self._keep: list[Any] = []

    def save(self, path: str) -> None:
        """Write the index for :meth:`load` (one file, its inverted lists memory-mappable)."""
        if self.index is None or self.extra is not None:
            raise ValueError("only a freshly fitted voter can be saved")
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str, n_refs: int, **kw: Any) -> "DescriptorVoter":
        """Memory-map a saved index covering slots ``0..n_refs-1``: only the lists a query probes are read."""
        v = cls(**kw)
        v.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
        v.slots = np.arange(n_refs, dtype=np.int64)
        v._mapped = True
        return v

    def _empty_like(self) -> faiss.Index:
        """An empty index with the same trained coarse quantizer and scalar quantizer."""
        src = self.index
        if isinstance(src, faiss.IndexIVFScalarQuantizer):
            q = faiss.IndexFlatL2(128)
            q.add(src.quantizer.reconstruct_n(0, src.nlist))
            out = faiss.IndexIVFScalarQuantizer(q, 128, src.nlist, faiss.ScalarQuantizer.QT_8bit)
            out.sq = src.sq
            out.is_trained = True
            self._keep.append(q)
            return out
        return faiss.IndexIDMap(faiss.IndexFlatL2(128))

    def fit(self, features: list[Features]) -> None:
        """Index every descriptor of the references (reference i = features[i])."""
        self.prepare(sum(len(f) for f in features), features)
        self.add(features)

    def prepare(self, n: int, sample: list[Features]) -> None:
        """An empty index for ``n`` descriptors, trained on ``sample``; then :meth:`add` in batches."""
        features = sample
        if n >= self.ivf_above:
            nlist = int(min(8192, max(64, 2 * np.sqrt(n))))
            quantizer = faiss.IndexFlatL2(128)
            index: Any = faiss.IndexIVFScalarQuantizer(quantizer, 128, nlist, faiss.ScalarQuantizer.QT_8bit)
            train = _sample_descriptors(features, 30 * nlist, self.seed)
            index.cp.seed = self.seed
            index.cp.min_points_per_centroid = 5
            index.train(train)
        else:
            index = faiss.IndexIDMap(faiss.IndexFlatL2(128))
        self.index = index
        # FAISS ids are "slots" that never change; row i of the collection owns
        # slot self.slots[i], so removing a reference needs no re-indexing.
        self.slots = np.zeros(0, np.int64)

    @property
    def n_refs(self) -> int:
        return int(len(self.slots))

    def add(self, features: list[Features]) -> None:
        """Append references (numbered after the ones already indexed)."""
        if self.index is None:
            raise ValueError("voter is not fitted")
        next_slot = int(self.slots.max()) + 1 if len(self.slots) else 0
        new = np.arange(next_slot, next_slot + len(features), dtype=np.int64)
        if self._mapped and self.extra is None:
            self.extra = self._empty_like()
        target = self.extra if self._mapped else self.index
        assert target is not None
        for f, slot in zip(features, new):
            if len(f):
                target.add_with_ids(desc_float(f.desc), np.full(len(f), slot, dtype=np.int64))
        self.slots = np.concatenate([self.slots, new])

    def remove(self, row: int) -> None:
        """Forget reference ``row``; later references move up one row, like the collection."""
        if self.index is None:
            raise ValueError("voter is not fitted")
        slot = int(self.slots[row])
        if self._mapped:
            raise ValueError("a memory-mapped voter is read-only: mask removed references instead")
        self.index.remove_ids(faiss.IDSelectorRange(slot, slot + 1))
        self.slots = np.delete(self.slots, row)

    def votes(self, query: Features) -> np.ndarray:
        """(n_refs,) float32 vote counts."""
        out = np.zeros(self.n_refs, np.float32)
        if self.index is None or len(query) == 0 or self.index.ntotal == 0:
            return out
        k = int(min(self.k, self.index.ntotal + (self.extra.ntotal if self.extra is not None else 0)))
        dist, ids = self._search(desc_float(query.desc), k)
        limit = (self.ratio**2) * dist[:, k - 1 : k] if k > 1 else np.full((len(ids), 1), np.inf)
        row_of_slot = np.full(int(self.slots.max()) + 2 if len(self.slots) else 1, -1, np.int64)
        row_of_slot[self.slots] = np.arange(len(self.slots))
        rows_hit = np.where(ids >= 0, row_of_slot[np.clip(ids, 0, len(row_of_slot) - 1)], -1)
        ok = (rows_hit >= 0) & (dist < limit)
        rows = np.repeat(np.arange(len(ids)), k).reshape(ids.shape)
        # one vote per (query descriptor, reference)
        pairs = np.unique(rows[ok] * np.int64(self.n_refs + 1) + rows_hit[ok])
        np.add.at(out, pairs % (self.n_refs + 1), 1.0)
        return out

    def _search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest reference descriptors, over the main index and the added ones."""
        parts = []
        for index in (self.index, self.extra):
            if index is None or index.ntotal == 0:
                continue
            if isinstance(index, faiss.IndexIVF):
                index.nprobe = self.nprobe
            parts.append(index.search(x, k))
        if len(parts) == 1:
            return parts[0]
        dist = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)

    def shortlist(self, query: Features, top: int = 25) -> list[tuple[int, float]]:
        """Best ``top`` (reference index, votes), most votes first; zero-vote refs left out."""
        v = self.votes(query)
        order = np.argsort(-v, kind="stable")[:top]
        return [(int(i), float(v[i])) for i in order if v[i] > 0]

    def state(self) -> dict[str, np.ndarray]:
        if self.index is None:
            raise ValueError("voter is not fitted")
        return {
            "voter_index": faiss.serialize_index(self.index),
            "voter_slots": self.slots.copy(),
            "voter_n_refs": np.array([self.n_refs], np.int64),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.index = faiss.deserialize_index(np.asarray(state["voter_index"], dtype=np.uint8))
        n = int(np.asarray(state["voter_n_refs"])[0])
        self.slots = (
            np.asarray(state["voter_slots"], np.int64) if "voter_slots" in state else np.arange(n, dtype=np.int64)
        )

    def spec(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "ratio": self.ratio,
            "nprobe": self.nprobe,
            "ivf": isinstance(self.index, faiss.IndexIVF),
        }


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 12) -> np.ndarray:
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, max_points_per_centroid=256)
    km.train(np.ascontiguousarray(x, np.float32))
    return np.ascontiguousarray(km.centroids, np.float32)


class InvertedFileVoter:
    """Shortlist references by shared visual words, scored tf-idf, from on-disk inverted lists.

    The vocabulary is a two-level k-means (``coarse`` x ``fine`` words) of the
    references' RootSIFT descriptors. Each reference is a bag of words; the
    inverted lists (word -> references holding it, with counts) are a CSR
    array that :meth:`load_state` can memory-map, so only the lists a query
    touches are read. Words that many references share count little (idf)
    and those in more than ``stop_fraction`` of them are skipped. References
    added after :meth:`fit` are kept in memory until the next checkpoint.
    """

    def __init__(
        self,
        coarse: int = 256,
        fine: int = 256,
        seed: int = 0,
        train_samples: int = 200_000,
        stop_fraction: float = 0.1,
    ) -> None:
        self.coarse = coarse
        self.fine = fine
        self.seed = seed
        self.train_samples = train_samples
        self.stop_fraction = stop_fraction
        self.c1: np.ndarray | None = None  # (K1, 128)
        self.c2: np.ndarray | None = None  # (K1, K2, 128)
        self.offsets = np.zeros(1, np.int64)
        self.postings = np.zeros(0, np.uint32)
        self.tf = np.zeros(0, np.uint16)
        self.idf = np.zeros(0, np.float32)
        self.norms = np.zeros(0, np.float32)  # per slot (checkpoint and tail)
        self.n_fit = 0
        self._tail: dict[int, list[tuple[int, int]]] = {}

    @property
    def n_words(self) -> int:
        return 0 if self.c2 is None else int(self.c2.shape[0] * self.c2.shape[1])

    @property
    def n_refs(self) -> int:
        return int(len(self.norms))

    def fit(self, features: list[Features]) -> None:
        """Learn the vocabulary and index every reference (reference i = slot i)."""
        x = _sample_descriptors(features, self.train_samples, self.seed)
        if len(x) == 0:
            x = np.zeros((1, 128), np.float32)
        k1 = int(max(1, min(self.coarse, len(x) // 64)))
        self.c1 = _kmeans(x, k1, self.seed) if k1 > 1 else x.mean(0, keepdims=True).astype(np.float32)
        top = _assign(x, self.c1)
        k2 = int(max(1, min(self.fine, len(x) // (8 * k1))))
        c2 = np.full((k1, k2, 128), 1e3, np.float32)  # unused fine slots are far from everything
        for c in range(k1):
            pts = x[top == c]
            kc = int(min(k2, len(pts) // 8))
            if kc >= 2:
                c2[c, :kc] = _kmeans(pts, kc, self.seed + c)
            elif len(pts):
                c2[c, 0] = pts.mean(0)
        self.c2 = c2
        words = [self.words(f.desc) for f in features]
        self._build_lists(words)

    def words(self, desc: np.ndarray) -> np.ndarray:
        """Word id of every descriptor (uint8 RootSIFT rows)."""
        if self.c1 is None or self.c2 is None or len(desc) == 0:
            return np.zeros(0, np.int64)
        x = desc_float(desc)
        top = _assign(x, self.c1)
        out = np.empty(len(x), np.int64)
        for c in np.unique(top):
            m = top == c
            out[m] = c * self.c2.shape[1] + _assign(x[m], self.c2[c])
        return out

    def _build_lists(self, words: list[np.ndarray]) -> None:
        n_words = self.n_words
        doc = (
            np.concatenate([np.full(len(w), i, np.int64) for i, w in enumerate(words)])
            if words
            else np.zeros(0, np.int64)
        )
        w_all = np.concatenate(words) if words else np.zeros(0, np.int64)
        key = w_all * np.int64(len(words) + 1) + doc
        uniq, counts = np.unique(key, return_counts=True)
        w_u, d_u = uniq // (len(words) + 1), uniq % (len(words) + 1)
        self.offsets = np.zeros(n_words + 1, np.int64)
        np.cumsum(np.bincount(w_u, minlength=n_words), out=self.offsets[1:])
        self.postings = d_u.astype(np.uint32)
        self.tf = np.minimum(counts, 65535).astype(np.uint16)
        df = np.diff(self.offsets).astype(np.float32)
        self.n_fit = len(words)
        self.idf = np.log((self.n_fit + 1) / (df + 1)).astype(np.float32)
        weights = self.tf.astype(np.float32) * self.idf[w_u]
        self.norms = np.sqrt(np.bincount(d_u, weights=weights**2, minlength=len(words))).astype(np.float32)
        self._tail = {}

    def add(self, features: list[Features]) -> None:
        """Append references after the ones indexed (kept in memory until the next fit/checkpoint)."""
        norms: list[float] = []
        for f in features:
            slot = self.n_refs + len(norms)
            w, c = np.unique(self.words(f.desc), return_counts=True)
            for word, count in zip(w, c):
                self._tail.setdefault(int(word), []).append((slot, int(count)))
            norms.append(float(np.sqrt(((c * self.idf[w]) ** 2).sum())) if len(w) else 0.0)
        self.norms = np.concatenate([self.norms, np.asarray(norms, np.float32)])

    def votes(self, query: Features) -> np.ndarray:
        """(n_refs,) tf-idf cosine of the query's bag of words with every reference."""
        out = np.zeros(self.n_refs, np.float32)
        if len(query) == 0 or self.c1 is None:
            return out
        w, c = np.unique(self.words(query.desc), return_counts=True)
        qw = c.astype(np.float32) * self.idf[w]
        stop = max(8, self.stop_fraction * self.n_fit)
        for word, q in zip(w, qw):
            a, b = int(self.offsets[word]), int(self.offsets[word + 1])
            if 0 < b - a <= stop:
                out[np.asarray(self.postings[a:b], np.int64)] += q * self.idf[word] * self.tf[a:b].astype(np.float32)
            for slot, count in self._tail.get(int(word), ()):
                out[slot] += q * self.idf[word] * count
        qn = float(np.sqrt((qw**2).sum())) or 1.0
        return out / (np.maximum(self.norms, 1e-6) * qn)

    def shortlist(self, query: Features, top: int = 25) -> list[tuple[int, float]]:
        v = self.votes(query)
        order = np.argsort(-v, kind="stable")[:top]
        return [(int(i), float(v[i])) for i in order if v[i] > 0]

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for a checkpoint; the tail is folded into the lists."""
        if self._tail:
            self._fold_tail()
        assert self.c1 is not None and self.c2 is not None
        return {
            "ivf_c1": self.c1,
            "ivf_c2": self.c2,
            "ivf_offsets": self.offsets,
            "ivf_postings": self.postings,
            "ivf_tf": self.tf,
            "ivf_idf": self.idf,
            "ivf_norms": self.norms,
            "ivf_n_fit": np.array([self.n_fit]),
        }

    def _fold_tail(self) -> None:
        n_words = self.n_words
        lens = np.diff(self.offsets)
        extra = np.zeros(n_words, np.int64)
        for word, items in self._tail.items():
            extra[word] = len(items)
        offsets = np.zeros(n_words + 1, np.int64)
        np.cumsum(lens + extra, out=offsets[1:])
        postings = np.empty(int(offsets[-1]), np.uint32)
        tf = np.empty(int(offsets[-1]), np.uint16)
        for word in range(n_words):
            a, b = int(self.offsets[word]), int(self.offsets[word + 1])
            o = int(offsets[word])
            postings[o : o + b - a] = self.postings[a:b]
            tf[o : o + b - a] = self.tf[a:b]
            for j, (slot, count) in enumerate(self._tail.get(word, ())):
                postings[o + b - a + j] = slot
                tf[o + b - a + j] = min(count, 65535)
        self.offsets, self.postings, self.tf, self._tail = offsets, postings, tf, {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.c1 = np.asarray(state["ivf_c1"], np.float32)
        self.c2 = np.asarray(state["ivf_c2"], np.float32)
        self.offsets = np.asarray(state["ivf_offsets"], np.int64)
        self.postings = state["ivf_postings"]
        self.tf = state["ivf_tf"]
        self.idf = np.asarray(state["ivf_idf"], np.float32)
        self.norms = np.asarray(state["ivf_norms"], np.float32)
        self.n_fit = int(np.asarray(state["ivf_n_fit"])[0])
        self._tail = {}


def _assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of every row."""
    d = (x * x).sum(1)[:, None] - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(1)[None, :]
    return np.argmin(d, axis=1)
