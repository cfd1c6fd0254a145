"""The weight-free ``local`` engine: VLAD over RootSIFT.

:class:`LocalEncoder` aggregates RootSIFT descriptors into one VLAD vector
(codebook fitted on the references, soft multiple assignment, signed square
root and intra-normalisation). It needs no downloaded weights.

The complementary keypoint-vote shortlist is :mod:`cover_id.index.vote`.
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


def __getattr__(name: str) -> Any:
    """The vote shortlist lives with the index engine now; this name keeps old imports working."""
    if name == "DescriptorVoter":
        from cover_id.index.vote import DescriptorVoter

        return DescriptorVoter
    raise AttributeError(name)
