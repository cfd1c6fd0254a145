"""Geometric verification: does a reference appear, as a plane, in the query?

Tentative RootSIFT matches (ratio test, one query keypoint per reference
keypoint) are verified with a robust homography. Raw inlier counts are not
enough: unrelated covers share studio logos, "DVD" marks and text, which give
15-80 inliers clustered in a small part of the reference. The score therefore
counts inliers spread over the reference (occupied cells of a grid) and
requires a plausible homography.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cover_id.features import Features, desc_float
from cover_id.geometry import polygon_area
from cover_id.identify.decide import Thresholds, decide  # re-exported: the decision lives in identify.decide
from cover_id.rerankers.base import GeomMatch, Reranker

__all__ = ["GeometricParams", "GeometricReranker", "GeomMatch", "Thresholds", "decide", "combined_score"]

GRID = 8  # spread is measured on a GRID x GRID grid over the reference


@dataclass
class GeometricParams:
    ratio: float = 0.85  # Lowe ratio on distances
    min_matches: int = 8  # fewer tentative matches: no homography attempted
    ransac_px: float = 0.008  # inlier threshold as a fraction of the query's longer side
    max_iters: int = 2000
    confidence: float = 0.999
    min_area: float = 0.002  # projected reference area / query area
    max_side_ratio: float = 6.0  # opposite sides of the projected quad
    max_scale_ratio: float = 20.0  # ref->query scale anisotropy
    cells_half: float = 10.0  # occupied cells giving score 0.5 (with full ratio)


def _knn2(q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of q: best and second-best squared distances and best index in r."""
    sim = q @ r.T
    rows = np.arange(len(q))
    j = sim.argmax(axis=1)
    s1 = sim[rows, j].copy()
    if r.shape[0] == 1:
        s2 = np.full_like(s1, -1.0)
    else:
        sim[rows, j] = -np.inf
        s2 = sim.max(axis=1)
    return 2.0 - 2.0 * s1, 2.0 - 2.0 * s2, j


def tentative_matches(qdesc: np.ndarray, rdesc: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Query->reference matches passing the ratio test, one per reference keypoint.

    ``qdesc``/``rdesc`` are float32 RootSIFT rows. Returns (query_idx, ref_idx).
    """
    if len(qdesc) == 0 or len(rdesc) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d1, d2, j = _knn2(qdesc, rdesc)
    keep = np.flatnonzero(np.maximum(d1, 0) < (ratio * ratio) * np.maximum(d2, 1e-12))
    if len(keep) == 0:
        return keep, keep
    # several query keypoints onto one reference keypoint: keep the closest
    order = keep[np.argsort(d1[keep], kind="stable")]
    _, first = np.unique(j[order], return_index=True)
    qi = order[first]
    return qi, j[qi]


def _quad_sane(h: np.ndarray, ref_size: tuple[int, int], query_size: tuple[int, int], p: GeometricParams) -> bool:
    """Projected reference outline is convex, not mirrored, not tiny, not wildly skewed."""
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return False
    w, hh = ref_size
    corners = np.array([[0, 0], [w, 0], [w, hh], [0, hh]], np.float64)
    ph = np.c_[corners, np.ones(4)] @ h.T
    if np.any(ph[:, 2] * ph[0, 2] <= 0):  # outline crosses the horizon line
        return False
    pts = ph[:, :2] / ph[:, 2:3]
    edges = np.roll(pts, -1, axis=0) - pts
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not np.all(cross > 0):  # image coords (y down): a non-mirrored, convex quad turns one way
        return False
    qw, qh = query_size
    area = polygon_area(pts)
    if area < p.min_area * qw * qh or area > 50.0 * qw * qh:
        return False
    lengths = np.linalg.norm(edges, axis=1)
    if lengths.min() <= 1e-6:
        return False
    if max(lengths[0], lengths[2]) / min(lengths[0], lengths[2]) > p.max_side_ratio:
        return False
    if max(lengths[1], lengths[3]) / min(lengths[1], lengths[3]) > p.max_side_ratio:
        return False
    # aspect change relative to the reference (a cover seen at a grazing angle is useless)
    aspect_ref = w / max(hh, 1)
    aspect_q = (lengths[0] + lengths[2]) / max(lengths[1] + lengths[3], 1e-6)
    r = aspect_q / aspect_ref
    return 1.0 / p.max_scale_ratio < r < p.max_scale_ratio


def _inside_count(h: np.ndarray, ref_size: tuple[int, int], xy: np.ndarray) -> int:
    """Query keypoints inside the projected reference outline."""
    w, hh = ref_size
    corners = np.array([[[0, 0]], [[w, 0]], [[w, hh]], [[0, hh]]], np.float32)
    quad = cv2.perspectiveTransform(corners, h).reshape(-1, 2)
    if len(xy) == 0:
        return 0
    # half-plane tests for a convex quad (sanity already guarantees convexity)
    ok = np.ones(len(xy), bool)
    for a, b in zip(quad, np.roll(quad, -1, axis=0)):
        ok &= (b[0] - a[0]) * (xy[:, 1] - a[1]) - (b[1] - a[1]) * (xy[:, 0] - a[0]) >= 0
    return int(ok.sum())


def _cells(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    cx = np.clip((xy[:, 0] / max(w, 1) * GRID).astype(np.int64), 0, GRID - 1)
    cy = np.clip((xy[:, 1] / max(h, 1) * GRID).astype(np.int64), 0, GRID - 1)
    return np.unique(cy * GRID + cx)


def combined_score(cells: int, inlier_ratio: float, sane: bool, p: GeometricParams) -> float:
    """0..1: saturating in spread-out inliers, damped when the inlier ratio is low."""
    if not sane or cells == 0:
        return 0.0
    base = cells / (cells + p.cells_half)
    return float(base * min(1.0, 0.5 + inlier_ratio))


class GeometricReranker(Reranker):
    """Verifies candidate references against a query with a homography."""

    name = "geometric"

    def __init__(self, params: GeometricParams | None = None, method: int = cv2.USAC_MAGSAC) -> None:
        self.params = params or GeometricParams()
        self.method = method

    def match(self, query: Features, ref: Features, ref_index: int = -1) -> GeomMatch:
        return self._verify(desc_float(query.desc), query, ref, ref_index)

    def _verify(self, qdesc: np.ndarray, query: Features, ref: Features, ref_index: int) -> GeomMatch:
        p = self.params
        qi, ri = tentative_matches(qdesc, desc_float(ref.desc), p.ratio)
        return self._homography(query, ref, ref_index, qi, ri)

    def _homography(self, query: Features, ref: Features, ref_index: int, qi: np.ndarray, ri: np.ndarray) -> GeomMatch:
        p = self.params
        out = GeomMatch(ref_index=ref_index, matches=int(len(qi)))
        if len(qi) < max(p.min_matches, 4):
            return out
        src = ref.xy[ri].astype(np.float32)
        dst = query.xy[qi].astype(np.float32)
        thr = max(1.0, p.ransac_px * max(query.size))
        h, mask = cv2.findHomography(src, dst, self.method, thr, maxIters=p.max_iters, confidence=p.confidence)
        if h is None or mask is None:
            return out
        inl = mask.ravel().astype(bool)
        n_in = int(inl.sum())
        out.homography = h
        out.inliers = n_in
        out.inlier_ratio = n_in / len(qi)
        out.sane = bool(n_in >= 4 and _quad_sane(h, ref.size, query.size, p))
        cells = len(_cells(ref.xy[ri[inl]], ref.size)) if n_in else 0
        possible = max(1, len(_cells(ref.xy, ref.size)))
        out.cells = cells
        out.spread = cells / possible
        out.detail["inlier_q"] = qi[inl]  # the view's keypoints that are inliers (appearance checks use them)
        out.detail["q_inside"] = _inside_count(h, ref.size, query.xy) if out.sane else 0
        out.detail["explained"] = n_in / max(out.detail["q_inside"], n_in, 1)
        out.score = combined_score(cells, out.inlier_ratio, out.sane, p)
        return out

    def match_views(
        self, qdesc: np.ndarray, views: "list[tuple[Features, np.ndarray]]", ref: Features, ref_index: int
    ) -> list[GeomMatch]:
        """Verify one reference in several views of one photo with a single matching pass.

        ``qdesc`` are the photo's float descriptors; each view is (its features,
        an array mapping every photo keypoint to the view's keypoint or -1).
        Tentative matches are computed once and filtered per view.
        """
        qi, ri = tentative_matches(qdesc, desc_float(ref.desc), self.params.ratio)
        out = []
        for feats, local in views:
            loc = local[qi]
            keep = loc >= 0
            out.append(self._homography(feats, ref, ref_index, loc[keep], ri[keep]))
        return out

    def rerank(self, query: Features, candidates: list[tuple[int, Features]]) -> list[GeomMatch]:
        """Verify every candidate; best first (score, then inliers)."""
        qdesc = desc_float(query.desc)
        results = [self._verify(qdesc, query, ref, idx) for idx, ref in candidates]
        results.sort(key=lambda m: (-m.score, -m.inliers, m.ref_index))
        return results
