"""The weight-free ``local`` engine: VLAD over RootSIFT, plus a descriptor-vote shortlist.

:class:`LocalEncoder` aggregates RootSIFT descriptors into one VLAD vector
(codebook fitted on the references, soft multiple assignment, signed square
root and intra-normalisation). It needs no downloaded weights.

:class:`DescriptorVoter` is the complementary candidate source: every
reference descriptor goes into a FAISS index (exact for small collections,
IVF-SQ8 beyond), each query descriptor votes for the references holding its
nearest neighbours. On cluttered whole phone photos it ranks the right cover
first where VLAD alone does not reach 100 % even at rank 25.
"""

from __future__ import annotations

import hashlib
from typing import Any

import faiss
import numpy as np

from cover_id.encoders.base import Encoder, l2_normalize
from cover_id.features import Features, desc_float, extract_features


def _fingerprint(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _sample_descriptors(features: list[Features], limit: int, seed: int) -> np.ndarray:
    desc = np.concatenate([f.desc for f in features]) if features else np.zeros((0, 128), np.uint8)
    if len(desc) > limit:
        rng = np.random.default_rng(seed)
        desc = desc[np.sort(rng.choice(len(desc), limit, replace=False))]
    return desc_float(desc)


class LocalEncoder(Encoder):
    """VLAD-``clusters`` over RootSIFT; dim = clusters * 128."""

    name = "local"
    supports_features = True
    fittable = True

    def __init__(
        self,
        clusters: int = 128,
        assign: int = 3,
        alpha: float = 0.5,
        max_side: int = 640,
        max_features: int = 1000,
        seed: int = 0,
        train_samples: int = 100_000,
    ) -> None:
        self.clusters = clusters
        self.assign = assign
        self.alpha = alpha
        self.max_side = max_side
        self.max_features = max_features
        self.seed = seed
        self.train_samples = train_samples
        self.centroids: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.clusters * 128

    def params(self) -> dict[str, Any]:
        return {
            "clusters": self.clusters,
            "assign": self.assign,
            "alpha": self.alpha,
            "max_side": self.max_side,
            "max_features": self.max_features,
            "seed": self.seed,
        }

    def spec(self) -> dict[str, Any]:
        fp = _fingerprint([self.centroids]) if self.centroids is not None else None
        return {"name": self.name, "dim": self.dim, "params": self.params(), "fingerprint": fp}

    # fitting ---------------------------------------------------------------
    def fit(self, images: list[np.ndarray]) -> None:
        self.fit_features([self.extract(im) for im in images])

    def fit_features(self, features: list[Features]) -> None:
        """k-means codebook on (a deterministic sample of) the references' descriptors."""
        x = _sample_descriptors(features, self.train_samples, self.seed)
        k = self.clusters
        if len(x) == 0:
            raise ValueError("no local features in the reference images: cannot fit a codebook")
        if len(x) < 4 * k:
            # tiny collection: jitter copies so k-means has enough points; the
            # codebook is then crude, which geometric verification makes up for
            rng = np.random.default_rng(self.seed)
            reps = int(np.ceil(4 * k / len(x)))
            x = np.repeat(x, reps, axis=0)
            x = x + rng.normal(0.0, 0.02, x.shape).astype(np.float32)
        km = faiss.Kmeans(128, k, niter=20, seed=self.seed, verbose=False, max_points_per_centroid=1000)
        km.train(np.ascontiguousarray(x, dtype=np.float32))
        self.centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)

    def is_fitted(self) -> bool:
        return self.centroids is not None

    def state(self) -> dict[str, np.ndarray]:
        if self.centroids is None:
            raise ValueError("encoder is not fitted")
        return {"centroids": self.centroids}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        c = np.ascontiguousarray(state["centroids"], dtype=np.float32)
        if c.ndim != 2 or c.shape[1] != 128:
            raise ValueError(f"bad codebook shape {c.shape}")
        self.clusters = int(c.shape[0])
        self.centroids = c

    # encoding --------------------------------------------------------------
    def extract(self, image_bgr: np.ndarray) -> Features:
        return extract_features(image_bgr, self.max_side, self.max_features)

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        return self.encode_features([self.extract(im) for im in images])

    def encode_features(self, features: list[Features]) -> np.ndarray:
        """(N, dim) float32, rows L2-normalised; an image without features gives zeros."""
        if self.centroids is None:
            raise ValueError("encoder is not fitted")
        out = np.zeros((len(features), self.dim), np.float32)
        for i, f in enumerate(features):
            out[i] = self._vlad(desc_float(f.desc))
        return out

    def _vlad(self, x: np.ndarray) -> np.ndarray:
        c = self.centroids
        assert c is not None
        k = len(c)
        if len(x) == 0:
            return np.zeros(k * 128, np.float32)
        d = (x * x).sum(1)[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
        m = min(self.assign, k)
        idx = np.argpartition(d, m - 1, axis=1)[:, :m] if m < k else np.argsort(d, axis=1)
        dm = np.take_along_axis(d, idx, axis=1)
        # soft weights relative to the nearest centre (squared RootSIFT distances are in [0, 2])
        w = np.exp(-(dm - dm.min(axis=1, keepdims=True)) / 0.02).astype(np.float32)
        v = np.zeros((k, 128), np.float32)
        for j in range(m):
            np.add.at(v, idx[:, j], w[:, j : j + 1] * (x - c[idx[:, j]]))
        v = (np.sign(v) * np.abs(v) ** self.alpha).astype(np.float32, copy=False)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return l2_normalize(v.reshape(1, -1))[0]


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

    def fit(self, features: list[Features]) -> None:
        """Index every descriptor of the references (reference i = features[i])."""
        n = sum(len(f) for f in features)
        if n >= self.ivf_above:
            nlist = int(min(8192, max(64, 2 * np.sqrt(n))))
            quantizer = faiss.IndexFlatL2(128)
            index: faiss.Index = faiss.IndexIVFScalarQuantizer(
                quantizer, 128, nlist, faiss.ScalarQuantizer.QT_8bit
            )
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
        self.add(features)

    @property
    def n_refs(self) -> int:
        return int(len(self.slots))

    def add(self, features: list[Features]) -> None:
        """Append references (numbered after the ones already indexed)."""
        if self.index is None:
            raise ValueError("voter is not fitted")
        next_slot = int(self.slots.max()) + 1 if len(self.slots) else 0
        new = np.arange(next_slot, next_slot + len(features), dtype=np.int64)
        for f, slot in zip(features, new):
            if len(f):
                self.index.add_with_ids(desc_float(f.desc), np.full(len(f), slot, dtype=np.int64))
        self.slots = np.concatenate([self.slots, new])

    def remove(self, row: int) -> None:
        """Forget reference ``row``; later references move up one row, like the collection."""
        if self.index is None:
            raise ValueError("voter is not fitted")
        slot = int(self.slots[row])
        self.index.remove_ids(faiss.IDSelectorRange(slot, slot + 1))
        self.slots = np.delete(self.slots, row)

    def votes(self, query: Features) -> np.ndarray:
        """(n_refs,) float32 vote counts."""
        out = np.zeros(self.n_refs, np.float32)
        if self.index is None or len(query) == 0 or self.index.ntotal == 0:
            return out
        if isinstance(self.index, faiss.IndexIVF):
            self.index.nprobe = self.nprobe
        k = int(min(self.k, self.index.ntotal))
        dist, ids = self.index.search(desc_float(query.desc), k)
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
        self.slots = np.asarray(state["voter_slots"], np.int64) if "voter_slots" in state else np.arange(n, dtype=np.int64)

    def spec(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "ratio": self.ratio,
            "nprobe": self.nprobe,
            "ivf": isinstance(self.index, faiss.IndexIVF),
        }
