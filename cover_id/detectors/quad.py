"""Finding a cover in a photo as a quadrilateral, and warping it flat.

Approach: on a grey copy downscaled to ``max_side``, detect line segments
(LSD), merge collinear ones into long lines, and form quadrilaterals from two
roughly parallel pairs of lines, ranked by how much of each side the segments
cover. Working from lines rather than closed contours keeps covers whose
outline is broken by glare, a finger over a corner or a background of the
same colour. The best candidates are scored for plausibility (gradient
support across each side, corner angles, opposite-side ratio, aspect, size);
larger plausible quads win; each side is then moved inwards to a straight edge
just inside it when there is one (the printed insert inside a DVD or game
case). Corners are mapped back to the input's coordinates.

Corner order (used everywhere in cover-id): clockwise as seen in the image,
starting at the corner whose outgoing edge points most nearly along +x. So the
edge TL->TR is the side that looks most like a "top" side in the photo, and
:func:`rectify` returns the cover rotated by less than 45 degrees from how the
photo shows it. A cover lying sideways in the photo therefore comes out
sideways; callers that need the cover's own upright orientation must try the
four 90-degree rotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cover_id.detectors.base import Detector, Quad
from cover_id.geometry import overlap_over_smaller, polygon_area
from cover_id.imageops import shrink

__all__ = ["Quad", "QuadDetector", "order_corners", "rectify", "rectify_transform", "draw_quads", "quad_aspect"]


def order_corners(points: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise (image coords, y down), starting at the "top-left".

    The start is the corner whose edge to the next corner points most nearly
    along +x, i.e. the most horizontal left-to-right side becomes TL->TR.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    center = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - center[1], pts[:, 0] - center[0])
    pts = pts[np.argsort(angles, kind="stable")]
    edges = np.roll(pts, -1, axis=0) - pts
    start = int(np.argmin(np.abs(np.arctan2(edges[:, 1], edges[:, 0]))))
    return np.ascontiguousarray(np.roll(pts, -start, axis=0))


def _mean_sides(corners: np.ndarray) -> tuple[float, float]:
    """(width, height) of a TL, TR, BR, BL quad: the means of its opposite sides."""
    c = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    width = (np.linalg.norm(c[1] - c[0]) + np.linalg.norm(c[2] - c[3])) / 2
    height = (np.linalg.norm(c[3] - c[0]) + np.linalg.norm(c[2] - c[1])) / 2
    return float(width), float(height)


def quad_aspect(corners: np.ndarray) -> float:
    """Estimated true width/height of the quad: mean of opposite side lengths."""
    width, height = _mean_sides(corners)
    return width / max(height, 1e-9)


def rectify_transform(corners: np.ndarray, max_side: int = 640) -> tuple[np.ndarray, tuple[int, int]]:
    """The 3x3 map from image pixels to the flat crop, and the crop's (width, height).

    Output aspect from mean opposite sides, longer side <= max_side, never
    upscaled beyond the quad's own size in the image.
    """
    c = order_corners(corners)
    width, height = _mean_sides(c)
    scale = min(1.0, max_side / max(width, height, 1.0))
    out_w = max(8, int(round(width * scale)))
    out_h = max(8, int(round(height * scale)))
    dst = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    return cv2.getPerspectiveTransform(c, dst), (out_w, out_h)


def rectify(image_bgr: np.ndarray, corners: np.ndarray, max_side: int = 640) -> np.ndarray:
    """Warp the quad flat (see :func:`rectify_transform` for the output size)."""
    matrix, (out_w, out_h) = rectify_transform(corners, max_side)
    scale = max(out_w, out_h) / max(1.0, *_mean_sides(order_corners(corners)))
    # INTER_AREA is not supported by warpPerspective; pre-blur when shrinking a lot
    # so the flat crop is not aliased.
    src = image_bgr
    if scale < 0.5:
        sigma = 0.5 / scale * 0.5
        src = cv2.GaussianBlur(image_bgr, (0, 0), sigma)
    return cv2.warpPerspective(src, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def draw_quads(image_bgr: np.ndarray, quads: list[Quad]) -> np.ndarray:
    """Overlay: best quad green, others orange; TL corner marked, score written."""
    out = image_bgr.copy()
    thickness = max(2, round(max(out.shape[:2]) / 400))
    for rank, quad in enumerate(quads):
        color = (0, 220, 0) if rank == 0 else (0, 160, 255)
        pts = np.round(quad.corners).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, color, thickness, cv2.LINE_AA)
        tl = tuple(int(v) for v in np.round(quad.corners[0]))
        cv2.circle(out, tl, thickness * 3, (0, 0, 255), -1, cv2.LINE_AA)
        cv2.putText(
            out,
            f"{rank + 1}: {quad.score:.2f}",
            (tl[0] + thickness * 4, tl[1] + thickness * 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            thickness * 0.4,
            color,
            max(1, thickness // 2),
            cv2.LINE_AA,
        )
    return out


@dataclass
class _Lines:
    """Long straight edges: merged LSD segments with their covered intervals."""

    point: np.ndarray  # (K, 2) a point on each line
    direction: np.ndarray  # (K, 2) unit direction
    theta: np.ndarray  # (K,) direction angle in [0, pi)
    intervals: np.ndarray  # (K, M, 2) covered [t0, t1] along direction, zero-padded
    support: np.ndarray  # (K,) total covered length


def _merge_intervals(iv: list[tuple[float, float]]) -> list[tuple[float, float]]:
    iv = sorted(iv)
    out = [list(iv[0])]
    for a, b in iv[1:]:
        if a <= out[-1][1] + 2.0:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _segment_contrast(seg: np.ndarray, grads: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Median gradient across each segment (grey levels per px), at 7 points."""
    h, w = grads[0].shape[:2]
    d = seg[:, 2:] - seg[:, :2]
    normal = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.linalg.norm(d, axis=1), 1e-6)[:, None]
    t = np.linspace(0.1, 0.9, 7)
    pts = seg[:, None, :2] + t[None, :, None] * d[:, None, :]
    best = np.zeros(pts.shape[:2])
    for off in (-1.0, 0.0, 1.0):
        q = pts + off * normal[:, None, :]
        xs = np.clip(np.round(q[..., 0]).astype(np.int32), 0, w - 1)
        ys = np.clip(np.round(q[..., 1]).astype(np.int32), 0, h - 1)
        across = np.abs(grads[0][ys, xs] * normal[:, None, 0] + grads[1][ys, xs] * normal[:, None, 1])
        best = np.maximum(best, across)
    return np.median(best, axis=1)


def _group_segments(
    segments: np.ndarray | None,
    grads: tuple[np.ndarray, np.ndarray],
    max_lines: int,
    min_support: float,
    max_intervals: int = 8,
) -> _Lines | None:
    """Greedily merge collinear segments (longest first) into lines, ranked by
    contrast-weighted length so faint texture (wood grain) does not crowd out
    the cover's outline."""
    if segments is None or len(segments) == 0:
        return None
    seg = segments.reshape(-1, 4).astype(np.float64)
    length = np.linalg.norm(seg[:, 2:] - seg[:, :2], axis=1)
    seg, length = seg[length >= 6], length[length >= 6]
    order = np.argsort(-length)
    seg, length = seg[order], length[order]
    weight = np.clip(_segment_contrast(seg, grads) / _FULL_CONTRAST, 0.0, 1.0)
    p0, p1 = seg[:, :2], seg[:, 2:]
    unit = (p1 - p0) / length[:, None]
    mid = (p0 + p1) / 2
    # compatible[k, j]: segment k lies on the line through segment j.
    sin = np.abs(unit[:, None, 0] * unit[None, :, 1] - unit[:, None, 1] * unit[None, :, 0])
    dist0 = np.abs(
        (p0[:, None, 0] - mid[None, :, 0]) * unit[None, :, 1] - (p0[:, None, 1] - mid[None, :, 1]) * unit[None, :, 0]
    )
    dist1 = np.abs(
        (p1[:, None, 0] - mid[None, :, 0]) * unit[None, :, 1] - (p1[:, None, 1] - mid[None, :, 1]) * unit[None, :, 0]
    )
    compatible = (sin < 0.07) & (dist0 <= 2.5) & (dist1 <= 2.5)  # ~4 degrees
    n = len(seg)
    # Each segment joins the first earlier seed it lies on, else seeds a line. Only the (few) compatible
    # earlier segments of each are visited: one pass in plain Python, no per-segment array work.
    rows, cols = np.nonzero(np.tril(compatible, -1))  # row-major: each row's columns ascending
    earlier: list[list[int]] = [[] for _ in range(n)]
    for k, j in zip(rows.tolist(), cols.tolist()):
        earlier[k].append(j)
    is_seed_list = [False] * n
    labels = list(range(n))
    for k in range(n):
        first = next((j for j in earlier[k] if is_seed_list[j]), -1)
        if first >= 0:
            labels[k] = first
        else:
            is_seed_list[k] = True
    # Lines long enough, each with its members in order; the exact sum decides below (bincount adds in
    # another order, so it only rules out lines clearly too short).
    support = np.bincount(np.array(labels, dtype=np.int64), weights=length, minlength=n)
    members_of: dict[int, list[int]] = {
        g: [] for g in range(n) if is_seed_list[g] and support[g] >= 0.999 * min_support
    }
    for k, g in enumerate(labels):
        if g in members_of:
            members_of[g].append(k)
    groups = [np.array(m, dtype=np.int64) for m in members_of.values()]
    lines = []
    for members in groups:
        if float(length[members].sum()) < min_support:
            continue
        strength = float((length[members] * weight[members]).sum())
        pts = np.concatenate([p0[members], p1[members]])
        weights = np.concatenate([length[members], length[members]])
        center = (pts * weights[:, None]).sum(0) / weights.sum()
        cov = ((pts - center) * weights[:, None]).T @ (pts - center)
        _, vecs = np.linalg.eigh(cov)
        direction = vecs[:, 1]
        if direction[1] < 0 or (direction[1] == 0 and direction[0] < 0):
            direction = -direction
        t0 = (p0[members] - center) @ direction
        t1 = (p1[members] - center) @ direction
        merged = _merge_intervals([(min(a, b), max(a, b)) for a, b in zip(t0, t1)])
        lines.append((strength, center, direction, merged))
    if len(lines) < 4:
        return None
    lines.sort(key=lambda item: -item[0])
    lines = lines[:max_lines]
    k = len(lines)
    intervals = np.zeros((k, max_intervals, 2))
    for i, (_, _, _, merged) in enumerate(lines):
        merged = sorted(merged, key=lambda ab: ab[0] - ab[1])[:max_intervals]
        intervals[i, : len(merged)] = merged
    direction = np.array([item[2] for item in lines])
    return _Lines(
        point=np.array([item[1] for item in lines]),
        direction=direction,
        theta=np.arctan2(direction[:, 1], direction[:, 0]) % np.pi,
        intervals=intervals,
        support=np.array([sum(b - a for a, b in item[3]) for item in lines]),
    )


def _line_quads(lines: _Lines, width: int, height: int, min_area: float, limit: int) -> list[np.ndarray]:
    """Quads bounded by two roughly parallel pairs of lines, best covered first."""
    k = len(lines.theta)
    diff = np.abs(lines.theta[:, None] - lines.theta[None, :])
    diff = np.minimum(diff, np.pi - diff)
    # Intersections of every pair of lines.
    p, d = lines.point, lines.direction
    cross = d[:, None, 0] * d[None, :, 1] - d[:, None, 1] * d[None, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = p[None, :, :] - p[:, None, :]
        t = (delta[..., 0] * d[None, :, 1] - delta[..., 1] * d[None, :, 0]) / cross
        meet = p[:, None, :] + t[..., None] * d[:, None, :]  # meet[i, j] on line i and j (inf * 0 for parallels)
    ii, jj = np.triu_indices(k, 1)
    # Opposite sides: within 30 degrees and apart; adjacent sides: over 40 degrees.
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
    gap = np.abs(np.einsum("nk,nk->n", p[jj] - p[ii], normal[ii]))
    parallel = (diff[ii, jj] < np.radians(30)) & (gap > 0.1 * min(width, height))
    pairs = np.stack([ii[parallel], jj[parallel]], axis=1)
    if len(pairs) < 2:
        return []
    pa, pb = np.triu_indices(len(pairs), 1)
    a, c = pairs[pa, 0], pairs[pa, 1]
    b, e = pairs[pb, 0], pairs[pb, 1]
    adjacent = np.radians(40)
    ok = (diff[a, b] > adjacent) & (diff[b, c] > adjacent) & (diff[c, e] > adjacent) & (diff[e, a] > adjacent)
    a, b, c, e = a[ok], b[ok], c[ok], e[ok]
    if len(a) == 0:
        return []
    quads = np.stack([meet[a, b], meet[b, c], meet[c, e], meet[e, a]], axis=1)  # (N, 4, 2)
    finite = np.isfinite(quads).all(axis=(1, 2))
    margin = 0.1 * max(width, height)
    inside = (
        (quads[..., 0] > -margin).all(1)
        & (quads[..., 0] < width + margin).all(1)
        & (quads[..., 1] > -margin).all(1)
        & (quads[..., 1] < height + margin).all(1)
    )
    x, y = quads[..., 0], quads[..., 1]
    area = 0.5 * np.abs((x * np.roll(y, -1, 1) - y * np.roll(x, -1, 1)).sum(1))
    keep = finite & inside & (area >= min_area)
    if not keep.any():
        return []
    quads, area = quads[keep], area[keep]
    sides = [a[keep], b[keep], c[keep], e[keep]]
    # Coverage: the fraction of each side lying on detected segments of its line.
    per_side: list[np.ndarray] = []
    for s_idx, (q0, q1) in enumerate(((3, 0), (0, 1), (1, 2), (2, 3))):
        li = sides[s_idx]
        t0 = np.einsum("nk,nk->n", quads[:, q0] - p[li], d[li])
        t1 = np.einsum("nk,nk->n", quads[:, q1] - p[li], d[li])
        lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
        iv = lines.intervals[li]
        overlap = np.clip(np.minimum(iv[..., 1], hi[:, None]) - np.maximum(iv[..., 0], lo[:, None]), 0, None)
        per_side.append(overlap.sum(1) / np.maximum(hi - lo, 1e-6))
    coverage = np.stack(per_side, axis=1)
    quick = (0.5 * coverage.mean(1) + 0.5 * coverage.min(1)) * (area / area.max()) ** 0.25
    quick[coverage.min(1) < 0.2] = 0
    best = np.argsort(-quick)[:limit]
    return [quads[i].astype(np.float32) for i in best if quick[i] > 0]


def _gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y gradients of a lightly blurred copy, in grey levels per pixel."""
    blur = cv2.GaussianBlur(gray, (5, 5), 0)
    return cv2.Sobel(blur, cv2.CV_32F, 1, 0, scale=0.125), cv2.Sobel(blur, cv2.CV_32F, 0, 1, scale=0.125)


def _side_support(
    start: np.ndarray,
    side: np.ndarray,
    inward: np.ndarray,
    offsets: np.ndarray,
    grads: tuple[np.ndarray, np.ndarray],
    min_gradient: float,
    samples: int = 32,
) -> np.ndarray:
    """support[i, j]: fraction of the side, moved inwards by offsets[i] at its start
    and offsets[j] at its end, lying on an edge of one consistent polarity."""
    h, w = grads[0].shape[:2]
    t = np.linspace(0.1, 0.9, samples, dtype=np.float32)
    pts = start[None, None, :] + t[:, None, None] * side[None, None, :] + offsets[None, :, None] * inward[None, None, :]
    xs = np.round(pts[..., 0]).astype(np.int32)
    ys = np.round(pts[..., 1]).astype(np.int32)
    valid = (xs >= 2) & (xs < w - 2) & (ys >= 2) & (ys < h - 2)
    xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
    gx, gy = grads[0][ys, xs], grads[1][ys, xs]
    across = gx * inward[0] + gy * inward[1]
    along = np.abs(gx * inward[1] - gy * inward[0])
    strong = valid & (np.abs(across) >= min_gradient) & (np.abs(across) >= 2.0 * along)
    polar = np.stack([strong & (across > 0), strong & (across < 0)])  # (2, samples, offsets)
    # Tolerate +-1 px: the side is a straight line, the sampled edge is not quite.
    polar[:, :, 1:] |= polar[:, :, :-1].copy()
    polar[:, :, :-1] |= polar[:, :, 1:].copy()
    n = len(offsets)
    # Offset at each sample for every (start, end) offset pair, as an index.
    idx = np.round(
        (1 - t)[:, None, None] * np.arange(n)[None, :, None] + t[:, None, None] * np.arange(n)[None, None, :]
    )
    idx = idx.astype(np.int64)
    rows = np.arange(samples)[:, None, None]
    return np.maximum(polar[0][rows, idx].mean(0), polar[1][rows, idx].mean(0))


def _intersect(p1: np.ndarray, d1: np.ndarray, p2: np.ndarray, d2: np.ndarray) -> np.ndarray | None:
    """Where line p1 + s*d1 meets line p2 + t*d2; None when they are parallel."""
    cross = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(cross) < 1e-9:
        return None
    delta = p2 - p1
    return p1 + (delta[0] * d2[1] - delta[1] * d2[0]) / cross * d1


_SUPPORT_RADIUS = 2  # px at detection scale
_FULL_CONTRAST = 20.0  # grey levels per px: edges at least this sharp count fully


@dataclass
class _Candidate:
    corners: np.ndarray  # (4, 2) float32 in detection-image coords, ordered
    score: float
    area: float


class QuadDetector(Detector):
    """Finds the largest plausible cover quadrilateral(s) in a photo.

    ``min_score`` is the plausibility below which nothing is returned.
    """

    name = "quad"

    def __init__(
        self,
        max_side: int = 512,
        min_area_frac: float = 0.05,
        max_area_frac: float = 0.98,
        max_aspect: float = 2.5,
        min_score: float = 0.5,
        min_gradient: float = 6.0,
        max_lines: int = 24,
        max_candidates: int = 16,
        inner_band: float = 0.15,
        inner_jump: float = 0.035,
        inner_support: float = 0.7,
        inner_ratio: float = 0.85,
    ) -> None:
        self.max_side = max_side
        self.min_area_frac = min_area_frac
        self.max_area_frac = max_area_frac
        self.max_aspect = max_aspect
        self.min_score = min_score
        self.min_gradient = min_gradient
        self.max_lines = max_lines
        self.max_candidates = max_candidates
        self.inner_band = inner_band
        self.inner_jump = inner_jump
        self.inner_support = inner_support
        self.inner_ratio = inner_ratio
        self._lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_NONE)

    def detect(self, image_bgr: np.ndarray, max_quads: int = 1) -> list[Quad]:
        """Best-first plausible quads (non-overlapping); empty when none is plausible."""
        h, w = image_bgr.shape[:2]
        gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        gray = shrink(gray, self.max_side)
        sh, sw = gray.shape[:2]
        grads = _gradients(gray)
        chosen = self._select(self._candidates(gray, grads), max_quads)
        chosen = [self._refined(c, grads) for c in chosen]
        factor = np.array([w / sw, h / sh], np.float32)
        return [Quad(order_corners(c.corners * factor), round(float(c.score), 4), c.area / (sw * sh)) for c in chosen]

    def _candidates(self, gray: np.ndarray, grads: tuple[np.ndarray, np.ndarray]) -> list[_Candidate]:
        h, w = gray.shape[:2]
        image_area = float(h * w)
        segments = self._lsd.detect(gray)[0]
        lines = _group_segments(segments, grads, self.max_lines, 0.08 * min(h, w))
        if lines is None:
            return []
        quads = _line_quads(lines, w, h, self.min_area_frac * image_area, self.max_candidates)
        if not quads:
            return []
        out = []
        for quad in quads:
            quad = order_corners(quad)
            score = self._score(quad, grads, image_area)
            if score > 0:
                out.append(_Candidate(quad, score, polygon_area(quad)))
        return out

    def _score(self, quad: np.ndarray, grads: tuple[np.ndarray, np.ndarray], image_area: float) -> float:
        """Plausibility 0..1; 0 for shapes a flat rectangle cannot project to."""
        h, w = grads[0].shape[:2]
        area_frac = polygon_area(quad) / image_area
        if not (self.min_area_frac <= area_frac <= self.max_area_frac):
            return 0.0
        sides = np.roll(quad, -1, axis=0) - quad
        lengths = np.linalg.norm(sides, axis=1)
        if lengths.min() < 8:
            return 0.0
        # Interior angles: perspective bends them, but rarely beyond ~50..130 degrees.
        cosines = np.abs(np.einsum("ij,ij->i", -np.roll(sides, 1, axis=0), sides)) / (np.roll(lengths, 1) * lengths)
        worst_cos = float(cosines.max())
        if worst_cos > 0.65:
            return 0.0
        # Opposite sides: perspective rarely makes one more than ~2.5x the other.
        if max(lengths[0], lengths[2]) > 2.5 * min(lengths[0], lengths[2]):
            return 0.0
        if max(lengths[1], lengths[3]) > 2.5 * min(lengths[1], lengths[3]):
            return 0.0
        aspect = quad_aspect(quad)
        if max(aspect, 1.0 / aspect) > self.max_aspect:
            return 0.0
        # Edge support: the fraction of each side where, within 2 px across it, the
        # image has a gradient pointing across the side (not along it). Sides on
        # the photo border get none: a cover cut off by the frame is not whole.
        n = 40
        t = np.linspace(0.05, 0.95, n, dtype=np.float32)
        normals = np.stack([-sides[:, 1], sides[:, 0]], axis=1) / lengths[:, None]
        offsets = np.arange(-_SUPPORT_RADIUS, _SUPPORT_RADIUS + 1, dtype=np.float32)
        base = quad[:, None, :] + t[None, :, None] * sides[:, None, :]  # (4, n, 2)
        pts = base[:, :, None, :] + offsets[None, None, :, None] * normals[:, None, None, :]
        xs = np.round(pts[..., 0]).astype(np.int32)
        ys = np.round(pts[..., 1]).astype(np.int32)
        inside = (xs >= 2) & (xs < w - 2) & (ys >= 2) & (ys < h - 2)
        xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
        gx, gy = grads[0][ys, xs], grads[1][ys, xs]
        nx, ny = normals[:, 0, None, None], normals[:, 1, None, None]
        across = np.abs(gx * nx + gy * ny)
        along = np.abs(gx * ny - gy * nx)
        good = inside & (across >= self.min_gradient) & (across >= 2.0 * along)
        side_support = good.any(axis=2).mean(axis=1)
        edge_score = 0.5 * float(side_support.mean()) + 0.5 * float(side_support.min())
        angle_score = 1.0 - (worst_cos / 0.65) ** 2
        return float(edge_score * (0.8 + 0.2 * angle_score))

    def _refined(self, cand: _Candidate, grads: tuple[np.ndarray, np.ndarray]) -> _Candidate:
        """Move each side inwards to a straight, full-length edge of one polarity
        just inside it (the printed insert seen through a DVD / game case)."""
        quad = cand.corners.astype(np.float64)
        lines = []
        for i in range(4):
            a, b = quad[i], quad[(i + 1) % 4]
            side = b - a
            length = float(np.linalg.norm(side))
            inward = np.array([-side[1], side[0]]) / length
            extent = float(np.mean([abs((quad[k] - a) @ inward) for k in ((i + 2) % 4, (i + 3) % 4)]))
            first = int(np.ceil(self.inner_jump * extent))
            offsets = np.arange(-2, max(int(round(self.inner_band * extent)), first) + 1, dtype=np.float64)
            support = _side_support(a, side, inward, offsets, grads, self.min_gradient)
            tilt = np.abs(offsets[:, None] - offsets[None, :])
            support = np.where(tilt <= 3 + 0.03 * length, support, 0.0)
            mean_off = (offsets[:, None] + offsets[None, :]) / 2
            here = float(np.where(np.abs(mean_off) <= 2, support, 0.0).max())
            inner = np.where(mean_off >= first, support, -1.0)
            best = float(inner.max())
            o0, o1 = 0.0, 0.0
            if best >= max(self.inner_support, self.inner_ratio * here):
                # The +-1 px tolerance makes a plateau of equally good lines: take its middle.
                ii, jj = np.nonzero(inner >= best - 0.02)
                o0, o1 = float(offsets[ii].mean()), float(offsets[jj].mean())
            lines.append((a + o0 * inward, side + (o1 - o0) * inward))
        corners = []
        for i in range(4):
            p = _intersect(*lines[i - 1], *lines[i])
            if p is None:
                return cand
            corners.append(p)
        refined = np.array(corners, np.float32)
        score = self._score(refined, grads, float(grads[0].size))
        if score < max(self.min_score, 0.9 * cand.score):
            return cand
        return _Candidate(order_corners(refined), max(score, cand.score), polygon_area(refined))

    def _select(self, candidates: list[_Candidate], max_quads: int) -> list[_Candidate]:
        """Rank by plausibility and size; drop duplicates and overlapping ones."""
        plausible = [c for c in candidates if c.score >= self.min_score]
        if not plausible:
            return []
        top_area = max(c.area for c in plausible)
        # Larger quads win among plausible ones: a cover's own artwork often
        # contains smaller strong rectangles (panels, photos, title boxes).
        plausible.sort(key=lambda c: c.score * (c.area / top_area) ** 0.25, reverse=True)
        chosen: list[_Candidate] = []
        for cand in plausible:
            if all(overlap_over_smaller(cand.corners, other.corners) < 0.2 for other in chosen):
                chosen.append(cand)
            if len(chosen) >= max_quads:
                break
        return chosen
