"""Keypoint-vote shortlist: references ranked by how many query descriptors they hold.

Two back-ends, chosen by collection size (``vote_index``, recorded in the manifest):

- :class:`DescriptorVoter` puts every reference descriptor into a FAISS index
  (exact, or IVF-SQ8 when large); each query descriptor votes for the references
  holding its nearest neighbours. The most accurate; its size grows with every
  descriptor (about 100 KiB per reference on disk, paged in as queried).
- :class:`WordVoter` keeps inverted lists over visual words, each posting
  confirmed by a 64-bit Hamming signature: about 12 bytes per descriptor on
  disk, memory-mapped, and a query reads only the lists of its words.

On cluttered whole phone photos both rank the right cover first where the
global vectors alone do not reach 100 % even at rank 25.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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
        return top_votes(self.votes(query), top)

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


def top_votes(votes: np.ndarray, top: int) -> list[tuple[int, float]]:
    """Best ``top`` (reference index, votes), most votes first (ties: lower index); zero-vote refs left out.

    Only the references with votes are looked at, and of those only the ones with at least the
    ``top``-th most votes are sorted (tens of thousands are voted for in a 1M collection).
    """
    voted = np.flatnonzero(votes > 0)
    if top > 0 and len(voted) > top:
        counts = votes[voted]
        kth = np.partition(counts, len(counts) - top)[len(counts) - top]  # the top-th largest
        voted = voted[counts >= kth]  # ties with it included: the order below settles them by index
    order = voted[np.argsort(-votes[voted], kind="stable")][:top]
    return [(int(i), float(votes[i])) for i in order]


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 12) -> np.ndarray:
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, verbose=False, max_points_per_centroid=256, min_points_per_centroid=4
    )
    km.train(np.ascontiguousarray(x, np.float32))
    return np.ascontiguousarray(km.centroids, np.float32)


# The vocabulary grows in its first level: a query reads the second-level words of every cell its
# descriptors fall in, so cells stay small (256 words, 128 KiB) and there are more of them. Measured
# with 500 photo descriptors, 2 words each, 262,144 words in all: 256 cells x 1,024 words 35 ms,
# 1,024 cells x 256 words 9 ms (the first level's product is one small matrix product either way).
COARSE_MIN, COARSE_MAX = 256, 1024  # first-level cells: 65,536 to 262,144 words in all
WORDS_FINE = 256  # second-level words per cell
POSTINGS_PER_WORD = 256  # the mean list length the vocabulary is sized for
MAX_POSTINGS = 400_000  # per query: the longest lists are left out past this many postings


def vocabulary_for(n_descriptors: int) -> tuple[int, int, int]:
    """(coarse, fine, training descriptors) for a collection of ``n_descriptors`` reference descriptors.

    The first level doubles until the mean list holds at most ``POSTINGS_PER_WORD``
    postings (from ``COARSE_MIN`` to ``COARSE_MAX`` cells of ``WORDS_FINE`` words); the
    k-means sees at least 8 descriptors per word (10 for margin), at least 500,000.
    """
    coarse = COARSE_MIN
    while coarse < COARSE_MAX and n_descriptors > coarse * WORDS_FINE * POSTINGS_PER_WORD:
        coarse *= 2
    return coarse, WORDS_FINE, max(500_000, 10 * coarse * WORDS_FINE)


class Vocabulary:
    """Visual words: a two-level k-means (``coarse`` x ``fine`` words) of RootSIFT descriptors."""

    def __init__(self, coarse: int = 256, fine: int = 256, seed: int = 0, train_samples: int = 500_000) -> None:
        self.coarse = coarse
        self.fine = fine
        self.seed = seed
        self.train_samples = train_samples
        self.c1: np.ndarray | None = None  # (K1, 128)
        self.c2: np.ndarray | None = None  # (K1, K2, 128)

    @property
    def n_words(self) -> int:
        return 0 if self.c2 is None else int(self.c2.shape[0] * self.c2.shape[1])

    def fit(self, x: np.ndarray) -> None:
        """Learn the words from sampled descriptors (float rows)."""
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

    def _c2_norms(self) -> np.ndarray:
        """(K1, K2) squared norms of the second-level words (computed once per vocabulary)."""
        assert self.c2 is not None
        cached = getattr(self, "_norms", None)
        if cached is None or cached[0] is not self.c2:
            self.set_norms((self.c2 * self.c2).sum(2))
            cached = self._norms
        return cached[1]

    def set_norms(self, norms: np.ndarray) -> None:
        """The second-level words' squared norms, as saved with them (a memory-mapped ``c2`` is not read to compute them)."""
        assert self.c2 is not None
        self._norms = (self.c2, np.asarray(norms, np.float32))

    def nearest_words(self, x: np.ndarray, m: int) -> np.ndarray:
        """(n, m) the ``m`` nearest words of every row within its nearest coarse cell, nearest first."""
        assert self.c1 is not None and self.c2 is not None
        k2 = self.c2.shape[1]
        m = int(max(1, min(m, k2)))
        out = np.empty((len(x), m), np.int64)
        if len(x) == 0:
            return out
        top = _assign(x, self.c1)
        # rows grouped by cell (in their order), each cell's distances in one product
        order = np.argsort(top, kind="stable")
        bounds = np.searchsorted(top[order], np.arange(len(self.c2) + 1))
        xs = x[order]
        xn = (xs * xs).sum(1)
        norms = self._c2_norms()
        for c in np.flatnonzero(np.diff(bounds)):
            a, b = bounds[c], bounds[c + 1]
            d = _sq_dists(xs[a:b], self.c2[c], xn[a:b], norms[c])
            near = np.argmin(d, axis=1)[:, None] if m == 1 else np.argsort(d, axis=1)[:, :m]
            out[order[a:b]] = c * k2 + near
        return out

    def words_of(self, x: np.ndarray) -> np.ndarray:
        """Word id of every float descriptor row."""
        return self.nearest_words(x, 1)[:, 0]


def _sq_dists(
    x: np.ndarray, centroids: np.ndarray, x_norms: np.ndarray | None = None, c_norms: np.ndarray | None = None
) -> np.ndarray:
    """(n, k) squared distances of every row to every centroid (squared norms computed unless given)."""
    xn = (x * x).sum(1) if x_norms is None else x_norms
    cn = (centroids * centroids).sum(1) if c_norms is None else c_norms
    return xn[:, None] - 2.0 * (x @ centroids.T) + cn[None, :]


ASSIGN_ROWS = 32_768  # rows whose distances to every centroid are held at once (1,024 centroids: 128 MiB)


def _assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of every row, a block of rows at a time (bounded memory)."""
    cn = (centroids * centroids).sum(1)
    out = np.empty(len(x), np.int64)
    for a in range(0, len(x), ASSIGN_ROWS):
        out[a : a + ASSIGN_ROWS] = np.argmin(_sq_dists(x[a : a + ASSIGN_ROWS], centroids, None, cn), axis=1)
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ranges [start, start + length): (the range each position came from, the positions)."""
    group = np.repeat(np.arange(len(starts)), lengths)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return group, offsets + np.arange(int(lengths.sum()))


SIG_BITS = 64


class WordVoter:
    """Shortlist references by visual words confirmed with Hamming signatures, from on-disk lists.

    Every reference descriptor is one posting: its visual word (a two-level k-means
    vocabulary of ``coarse`` x ``fine`` words), its slot, and a 64-bit signature
    (signs of a random projection of its residual to the word's centroid). A query
    descriptor votes for the references holding a posting of its word within
    ``max_hamming`` bits, weighted by the word's idf and the signature distance; a
    reference gets at most one vote per query descriptor, as with
    :class:`DescriptorVoter`, whose recall it approaches without holding every
    descriptor in memory. The lists are ``.npy`` files that :meth:`load`
    memory-maps: a query reads only the lists of its words. References added
    later are kept in a small in-memory tail until the next build.
    """

    def __init__(
        self,
        coarse: int = 256,
        fine: int = 256,
        seed: int = 0,
        train_samples: int = 500_000,
        max_hamming: int = 24,
        sigma: float = 12.0,
        stop_fraction: float = 0.05,
        assign: int = 2,
        max_postings: int = MAX_POSTINGS,
    ) -> None:
        self.assign = assign
        self.max_postings = max_postings
        self.vocab = Vocabulary(coarse, fine, seed, train_samples)
        self.seed = seed
        self.max_hamming = max_hamming
        self.sigma = sigma
        self.stop_fraction = stop_fraction
        self.proj = np.zeros((SIG_BITS, 128), np.float32)
        self.medians = np.zeros((0, SIG_BITS), np.float32)
        self.offsets = np.zeros(1, np.int64)
        self.postings: np.ndarray = np.zeros(0, np.uint32)
        self.sigs: np.ndarray = np.zeros(0, np.uint64)
        self.idf = np.zeros(0, np.float32)
        self.covered = 0  # slots 0..covered-1 are in the lists
        self._tail: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (words, slots, sigs) per added slot
        self._tail_sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def n_refs(self) -> int:
        return self.covered + len(self._tail)

    # ---- vocabulary and signatures -------------------------------------------------------------
    def fit_vocabulary(self, sample: list[Features]) -> None:
        """Learn the words, the projection and the per-word medians from a sample of references."""
        x = _sample_descriptors(sample, self.vocab.train_samples, self.seed)
        self.vocab.fit(x)
        rng = np.random.default_rng(self.seed)
        q, _ = np.linalg.qr(rng.normal(size=(128, 128)))
        self.proj = np.ascontiguousarray(q[:SIG_BITS], np.float32)
        n_words = self.vocab.n_words
        self.medians = np.zeros((n_words, SIG_BITS), np.float32)
        if len(x):
            w = self.vocab.words_of(x)
            p = self._project(x, w)
            order = np.argsort(w, kind="stable")
            w, p = w[order], p[order]
            bounds = np.searchsorted(w, np.arange(n_words + 1))
            for word in np.flatnonzero(np.diff(bounds) >= 8):
                self.medians[word] = np.median(p[bounds[word] : bounds[word + 1]], 0)

    def _project(self, x: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Random projection of each descriptor's residual to its word's centroid (a block of rows at a time)."""
        assert self.vocab.c2 is not None
        c2 = self.vocab.c2.reshape(-1, 128)
        out = np.empty((len(x), SIG_BITS), np.float32)
        for a in range(0, len(x), ASSIGN_ROWS):
            b = a + ASSIGN_ROWS
            out[a:b] = (x[a:b] - c2[words[a:b]]) @ self.proj.T
        return out

    def _signatures(self, x: np.ndarray, words: np.ndarray) -> np.ndarray:
        bits = (self._project(x, words) > self.medians[words]).astype(np.uint64)
        return (bits << np.arange(SIG_BITS, dtype=np.uint64)[None, :]).sum(1, dtype=np.uint64)

    def encode(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        """(word ids, signatures) of one reference's descriptors."""
        if len(f) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        x = desc_float(f.desc)
        w = self.vocab.words_of(x)
        return w, self._signatures(x, w)

    # ---- building ---------------------------------------------------------------------------
    def _set_idf(self, df: np.ndarray) -> None:
        self.idf = np.log((self.covered + 1) / (df + 1)).astype(np.float32)

    def build(self, folder: Path, n_slots: int, read: Callable[[int], Features], sample: list[Features]) -> None:
        """Write the lists of slots ``0..n_slots-1`` to ``folder`` in two streaming passes.

        Pass one encodes references a batch at a time into scratch files (words,
        slots, signatures) and counts each word; pass two places every posting at
        its word's offset in memory-mapped output files. Memory stays bounded by
        the batch, whatever ``n_slots`` is.
        """
        self.fit_vocabulary(sample)
        folder.mkdir(parents=True, exist_ok=True)
        n_words = self.vocab.n_words
        counts = np.zeros(n_words, np.int64)
        df = np.zeros(n_words, np.float64)
        scratch = [folder / f"scratch.{k}" for k in ("w", "s", "g")]
        bounds = [0]
        with open(scratch[0], "wb") as fw, open(scratch[1], "wb") as fs, open(scratch[2], "wb") as fg:
            for a in range(0, n_slots, BUILD_BATCH):
                ws, ss, gs = [], [], []
                for slot in range(a, min(n_slots, a + BUILD_BATCH)):
                    w, g = self.encode(read(slot))
                    ws.append(w.astype(np.int32))
                    ss.append(np.full(len(w), slot, np.uint32))
                    gs.append(g)
                    df[np.unique(w)] += 1
                w_b = np.concatenate(ws) if ws else np.zeros(0, np.int32)
                counts += np.bincount(w_b, minlength=n_words)
                fw.write(w_b.tobytes())
                fs.write((np.concatenate(ss) if ss else np.zeros(0, np.uint32)).tobytes())
                fg.write((np.concatenate(gs) if gs else np.zeros(0, np.uint64)).tobytes())
                bounds.append(bounds[-1] + len(w_b))
        total = int(counts.sum())
        self.offsets = np.zeros(n_words + 1, np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        post = np.lib.format.open_memmap(folder / "postings.npy", "w+", np.uint32, (total,))
        sigs = np.lib.format.open_memmap(folder / "sigs.npy", "w+", np.uint64, (total,))
        cursor = self.offsets[:-1].copy()
        w_all = np.memmap(scratch[0], np.int32, "r", shape=(total,)) if total else np.zeros(0, np.int32)
        s_all = np.memmap(scratch[1], np.uint32, "r", shape=(total,)) if total else np.zeros(0, np.uint32)
        g_all = np.memmap(scratch[2], np.uint64, "r", shape=(total,)) if total else np.zeros(0, np.uint64)
        for a, b in zip(bounds[:-1], bounds[1:]):
            w = np.asarray(w_all[a:b], np.int64)
            order = np.argsort(w, kind="stable")
            w_sorted = w[order]
            first = np.searchsorted(w_sorted, w_sorted)  # each word's first place in the sorted chunk
            pos = cursor[w_sorted] + (np.arange(len(w_sorted)) - first)
            post[pos] = np.asarray(s_all[a:b])[order]
            sigs[pos] = np.asarray(g_all[a:b])[order]
            cursor += np.bincount(w_sorted, minlength=n_words)
        post.flush()
        sigs.flush()
        del post, sigs, w_all, s_all, g_all
        for f in scratch:
            f.unlink()
        self.covered = n_slots
        self._set_idf(df)
        self._save_vocab(folder)
        self.postings = np.load(folder / "postings.npy", mmap_mode="r")
        self.sigs = np.load(folder / "sigs.npy", mmap_mode="r")

    def _save_vocab(self, folder: Path) -> None:
        """``vocab.npz`` plus the two large arrays as ``.npy`` files, which :meth:`load` memory-maps
        (262,144 words: 192 MiB that opening would otherwise read and copy)."""
        assert self.vocab.c1 is not None and self.vocab.c2 is not None
        np.save(folder / "c2.npy", np.ascontiguousarray(self.vocab.c2, np.float32))
        np.save(folder / "medians.npy", np.ascontiguousarray(self.medians, np.float32))
        with open(folder / "vocab.npz", "wb") as fh:
            np.savez(
                fh,
                c1=self.vocab.c1,
                c2_norms=self.vocab._c2_norms(),
                proj=self.proj,
                offsets=self.offsets,
                idf=self.idf,
                covered=np.array([self.covered], np.int64),
                params=np.array(
                    [self.max_hamming, self.sigma, self.stop_fraction, self.max_postings, self.assign], np.float64
                ),
            )

    @classmethod
    def load(cls, folder: Path) -> "WordVoter":
        """Open saved lists; postings, signatures and the second-level words stay on disk (memory-mapped)."""
        v = cls()
        with np.load(folder / "vocab.npz", allow_pickle=False) as z:
            v.vocab.c1 = z["c1"]
            if "c2" in z.files:  # lists written before the vocabulary was memory-mapped
                v.vocab.c2, v.medians = z["c2"], z["medians"]
            else:
                v.vocab.c2 = np.load(folder / "c2.npy", mmap_mode="r")
                v.medians = np.load(folder / "medians.npy", mmap_mode="r")
                v.vocab.set_norms(z["c2_norms"])
            v.proj, v.offsets, v.idf = z["proj"], z["offsets"], z["idf"]
            v.covered = int(z["covered"][0])
            p = z["params"]
            v.max_hamming, v.sigma, v.stop_fraction = int(p[0]), float(p[1]), float(p[2])
            if len(p) > 3:  # written since the posting budget (older lists: the defaults)
                v.max_postings, v.assign = int(p[3]), int(p[4])
        v.postings = np.load(folder / "postings.npy", mmap_mode="r")
        v.sigs = np.load(folder / "sigs.npy", mmap_mode="r")
        return v

    def add(self, features: list[Features]) -> None:
        """Append references after the ones indexed (in memory until the next build)."""
        for f in features:
            w, g = self.encode(f)
            self._tail.append((w, np.full(len(w), self.n_refs, np.uint32), g))
        self._tail_sorted = None

    # ---- querying ---------------------------------------------------------------------------
    def _tail_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._tail_sorted is None:
            w = np.concatenate([t[0] for t in self._tail]) if self._tail else np.zeros(0, np.int64)
            s = np.concatenate([t[1] for t in self._tail]) if self._tail else np.zeros(0, np.uint32)
            g = np.concatenate([t[2] for t in self._tail]) if self._tail else np.zeros(0, np.uint64)
            order = np.argsort(w, kind="stable")
            self._tail_sorted = (w[order], s[order], g[order])
        return self._tail_sorted

    def votes(self, query: Features) -> np.ndarray:
        """(n_refs,) float32 votes per slot."""
        out = np.zeros(self.n_refs, np.float32)
        if len(query) == 0 or self.vocab.c1 is None:
            return out
        # each descriptor looks in its ``assign`` nearest words, not only the one it falls in
        x = desc_float(query.desc)
        words = self.vocab.nearest_words(x, self.assign)
        m = words.shape[1]
        w = words.ravel()
        sig = self._signatures(np.repeat(x, m, axis=0) if m > 1 else x, w)
        a, b = self.offsets[w], self.offsets[w + 1]
        stop = max(8.0, self.stop_fraction * self.covered) * 64  # a word everywhere many times over says nothing
        q_idx, pos = _ranges(a, self._budget(np.where(b - a <= stop, b - a, 0)))
        refs = np.asarray(self.postings[pos], np.int64)
        other = np.asarray(self.sigs[pos], np.uint64)
        if self._tail:
            tw, ts, tg = self._tail_lists()
            ta = np.searchsorted(tw, w, "left")
            tq, tpos = _ranges(ta, np.searchsorted(tw, w, "right") - ta)
            q_idx = np.concatenate([q_idx, tq])
            refs = np.concatenate([refs, ts[tpos].astype(np.int64)])
            other = np.concatenate([other, tg[tpos]])
        ham = np.bitwise_count(other ^ sig[q_idx]).astype(np.float32)
        ok = ham <= self.max_hamming
        q_idx, refs, ham = q_idx[ok], refs[ok], ham[ok]
        weight = self.idf[w[q_idx]] * (np.exp(-((ham / self.sigma) ** 2)) if self.sigma else 1.0)
        # one vote per (query descriptor, reference): its best-matching posting
        key = (q_idx // m) * np.int64(self.n_refs + 1) + refs
        order = np.lexsort((-weight, key))
        key, weight = key[order], weight[order]
        first = np.ones(len(key), bool)
        first[1:] = key[1:] != key[:-1]
        np.add.at(out, key[first] % (self.n_refs + 1), weight[first])
        return out

    def _budget(self, lengths: np.ndarray) -> np.ndarray:
        """List lengths to read: the shortest (most telling) lists first, ``max_postings`` in all."""
        if not self.max_postings or int(lengths.sum()) <= self.max_postings:
            return lengths
        order = np.argsort(lengths, kind="stable")
        keep = np.cumsum(lengths[order]) <= self.max_postings
        out = np.zeros_like(lengths)
        out[order[keep]] = lengths[order[keep]]
        return out

    def shortlist(self, query: Features, top: int = 25) -> list[tuple[int, float]]:
        return top_votes(self.votes(query), top)


BUILD_BATCH = 512  # references encoded at a time by WordVoter.build
