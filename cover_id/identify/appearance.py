"""Appearance: does the photo look like the reference everywhere the match says it should?

Keypoint inliers prove that *some* of the reference is in the photo. Another
edition (the same artwork under a new title block), a card variant (the same
art, a foil sheen) or a card that shares only the frame template all give
inliers too. :func:`compare` warps the photo into the reference's frame
through the verified homography and correlates the two cell by cell with a
normalised cross-correlation that ignores lighting (gain and offset per cell)
and tolerates a few pixels of misregistration. A cover that really is the
reference agrees almost everywhere it is visible; a look-alike disagrees over
a whole region.

:func:`twins` finds where two references differ from each other (variant
twins: a set code, a rarity stamp, a foil sheen) and compares the photo with
both exactly there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from cover_id.index.store import IndexStore

SIDE = 160  # the reference's longer side when comparing
GRID = 8  # cells along the longer side
BLUR = 2.0  # sigma at comparison scale: tolerates focus blur and small misregistration
MIN_STD = 6.0  # a reference cell flatter than this (grey levels) carries no evidence
MIN_VISIBLE = 0.9  # a cell counts only when this much of it falls inside the photo
AGREE_NCC = 0.35  # a cell agrees when its correlation reaches this
SHIFT = 3  # each cell may shift this many comparison pixels (homographies are not pixel-exact)
GLARE = 245  # photo pixels this bright are washed out
CACHE_SIZE = 64  # reference images kept in memory (grey, at keypoint size)


@dataclass
class Agreement:
    """Per-cell correlation between the warped photo and the reference."""

    ncc: "np.ndarray"  # (rows, cols) float32; NaN where the cell carries no evidence
    visible: "np.ndarray"  # (rows, cols) bool: inside the photo
    contrast: "np.ndarray | None" = None  # photo's / reference's standard deviation per cell; NaN as ncc

    @property
    def informative(self) -> int:
        import numpy as np

        return int(np.isfinite(self.ncc).sum())

    @property
    def agree(self) -> float:
        """Fraction of informative cells that agree (1.0 when none is informative)."""
        import numpy as np

        n = self.informative
        return float((np.nan_to_num(self.ncc, nan=-1.0) >= AGREE_NCC).sum() / n) if n else 1.0

    @property
    def worst_band(self) -> float:
        """Lowest agreement over any band of a quarter of the rows or columns (a replaced title block)."""
        import numpy as np

        agree = np.where(np.isfinite(self.ncc), (np.nan_to_num(self.ncc, nan=-1.0) >= AGREE_NCC).astype(float), np.nan)
        rows, cols = agree.shape
        worst = 1.0
        for axis, n in ((0, rows), (1, cols)):
            width = max(1, n // 4)
            for start in range(0, n - width + 1):
                band = agree[start : start + width] if axis == 0 else agree[:, start : start + width]
                if np.isfinite(band).sum() >= max(2, band.size // 2):
                    worst = min(worst, float(np.nanmean(band)))
        return worst


def gray(image: "np.ndarray") -> "np.ndarray":
    import cv2
    import numpy as np

    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return g.astype(np.float32)


_cache: "OrderedDict[tuple[str, int, str], np.ndarray]" = OrderedDict()
_lock = threading.Lock()


def reference_image(store: "IndexStore", i: int) -> "np.ndarray | None":
    """Reference ``i`` (BGR) at its keypoints' size (the frame homographies map from); None if unreadable."""
    import cv2

    from cover_id.imageio import read_image

    path = store.image_path(i)
    key = (str(path), i, store.records[i].get("id", ""))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        image = read_image(path)
    except Exception:  # a reference moved or deleted since indexing: no appearance evidence
        return None
    w, h = store.features[i].size
    out = cv2.resize(image, (int(w), int(h)), interpolation=cv2.INTER_AREA)
    with _lock:
        _cache[key] = out
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return out


def reference_gray(store: "IndexStore", i: int) -> "np.ndarray | None":
    """Reference ``i`` in grey (float32) at its keypoints' size; None if unreadable."""
    image = reference_image(store, i)
    return None if image is None else gray(image)


def _frame(box: tuple[float, float, float, float], side: int = SIDE) -> "tuple[np.ndarray, int, int]":
    """(comparison px -> reference px, comparison width, height) for a content box."""
    import numpy as np

    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    s = side / max(bw, bh)
    cw, ch = max(16, round(bw * s)), max(16, round(bh * s))
    return np.array([[bw / cw, 0, x0], [0, bh / ch, y0], [0, 0, 1]], np.float64), cw, ch


def _edges(cw: int, ch: int) -> "tuple[np.ndarray, np.ndarray]":
    import numpy as np

    rows, cols = (GRID, max(1, round(GRID * cw / ch))) if ch >= cw else (max(1, round(GRID * ch / cw)), GRID)
    return np.linspace(0, ch, rows + 1).astype(int), np.linspace(0, cw, cols + 1).astype(int)


def warp_photo(
    photo: "np.ndarray",
    ref_to_photo: "np.ndarray",
    box: tuple[float, float, float, float],
    side: int = SIDE,
    pad: int = SHIFT,
    colour: bool = False,
) -> "tuple[np.ndarray, np.ndarray]":
    """The photo (grey, or BGR float32 with ``colour``) and a visibility mask in the comparison frame of
    ``box``, padded by ``pad``."""
    import cv2
    import numpy as np

    from_cmp, cw, ch = _frame(box, side)
    x0, y0, x1, y1 = box
    # Shrink the photo first so the warp does not alias: to about the cover's size at comparison scale.
    corners = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float32)
    cover_px = np.sqrt(max(cv2.contourArea(cv2.perspectiveTransform(corners, ref_to_photo)[0]), 1.0))
    f = min(1.0, 1.5 * np.sqrt(cw * ch) / cover_px)
    g = photo.astype(np.float32) if colour and photo.ndim == 3 else gray(photo)
    small = cv2.resize(g, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1.0 else g
    h = np.diag([f, f, 1.0]) @ ref_to_photo @ from_cmp @ np.array([[1, 0, -pad], [0, 1, -pad], [0, 0, 1]])
    size = (cw + 2 * pad, ch + 2 * pad)
    warped = cv2.warpPerspective(small, h, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside = cv2.warpPerspective(
        np.ones(small.shape[:2], np.float32), h, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return warped, inside


def reference_frame(
    reference: "np.ndarray",
    box: tuple[float, float, float, float],
    to_ref: "np.ndarray | None" = None,
    side: int = SIDE,
) -> "np.ndarray":
    """A reference (grey) in the comparison frame of ``box``; ``to_ref`` maps ``box``'s frame into its pixels
    (NaN where it has no pixels)."""
    import cv2
    import numpy as np

    from_cmp, cw, ch = _frame(box, side)
    m = from_cmp if to_ref is None else to_ref @ from_cmp
    flags = (cv2.INTER_AREA if to_ref is None else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(reference, m.astype(np.float64), (cw, ch), flags=flags, borderValue=(np.nan,) * 4)


def compare(
    photo: "np.ndarray",
    ref_to_photo: "np.ndarray",
    reference: "np.ndarray",
    box: tuple[float, float, float, float],
    cells: "np.ndarray | None" = None,
) -> Agreement:
    """Correlate the photo (warped through ``ref_to_photo``: reference px -> photo px) with ``reference``
    (grey, or already in the comparison frame) cell by cell over ``box`` (x0, y0, x1, y1 in reference
    pixels: the printed content). ``cells`` (bool grid) limits the comparison to some cells."""
    import cv2
    import numpy as np

    _, cw, ch = _frame(box)
    warped, inside = warp_photo(photo, ref_to_photo, box)
    ref_cmp = reference if reference.shape[:2] == (ch, cw) else reference_frame(reference, box)
    a = cv2.GaussianBlur(np.nan_to_num(ref_cmp, nan=0.0), (0, 0), BLUR)
    b = cv2.GaussianBlur(warped, (0, 0), BLUR)
    ys, xs = _edges(cw, ch)
    rows, cols = len(ys) - 1, len(xs) - 1
    ncc = np.full((rows, cols), np.nan, np.float32)
    contrast = np.full((rows, cols), np.nan, np.float32)
    visible = np.zeros((rows, cols), bool)
    pad = SHIFT
    for r in range(rows):
        for c in range(cols):
            ya, yb, xa, xb = ys[r], ys[r + 1], xs[c], xs[c + 1]
            visible[r, c] = inside[ya + pad : yb + pad, xa + pad : xb + pad].mean() >= MIN_VISIBLE
            if cells is not None and not cells[r, c]:
                continue
            raw = ref_cmp[ya:yb, xa:xb]
            cell = a[ya:yb, xa:xb]
            if not visible[r, c] or not np.isfinite(raw).all() or float(cell.std()) < MIN_STD:
                continue
            seen = warped[ya + pad : yb + pad, xa + pad : xb + pad]
            if float((seen >= GLARE).mean()) >= 0.3:  # washed out by glare: no evidence either way
                continue
            search = b[ya : yb + 2 * pad, xa : xb + 2 * pad]
            ncc[r, c] = float(cv2.matchTemplate(search, cell, cv2.TM_CCOEFF_NORMED).max())
            contrast[r, c] = float(b[ya + pad : yb + pad, xa + pad : xb + pad].std()) / float(cell.std())
    return Agreement(ncc, visible, contrast)


TWIN_SIDE = 480  # twins are told apart at this size (a set code, a rarity stamp)
TWIN_BLUR = 0.7
TWIN_DIFF = 28.0  # grey levels: where two twins' pixels differ more than this, they differ
TWIN_SHIFT = 4  # comparison pixels each differing region may shift
TWIN_CELL = 48  # comparison pixels: larger differing regions are compared piece by piece


@dataclass
class TwinVerdict:
    """How the photo compares with two near-identical references where they differ."""

    differing: float  # fraction of the content box where the references differ
    blend: float  # the photo there, as a blend of the two: 0 = the first, 1 = the second (NaN: nothing seen)


def _lstsq(a: "np.ndarray", b: "np.ndarray") -> "np.ndarray | None":
    """Least squares, or None where it cannot be solved (non-finite pixels, no convergence)."""
    import numpy as np

    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    try:
        return np.linalg.lstsq(a, b, rcond=None)[0]
    except np.linalg.LinAlgError:
        return None


def _blend(photo: "np.ndarray", a: "np.ndarray", b: "np.ndarray", weight: "np.ndarray") -> float:
    """Least-squares t in photo ~ gain * (a + t (b - a)) + offset (one gain, an offset per channel).

    One gain for every channel: with a gain per channel a flat stamp that only changes colour could be
    explained by either twin.
    """
    import numpy as np

    channels = a.shape[2]
    n = weight.size
    w = np.sqrt(weight.ravel())
    x = np.zeros((n * channels, channels + 2), np.float64)
    for ch in range(channels):
        rows = slice(ch * n, (ch + 1) * n)
        x[rows, 0] = a[..., ch].ravel()
        x[rows, 1 + ch] = 1.0
        x[rows, -1] = (b[..., ch] - a[..., ch]).ravel()  # gain * t folded into one unknown
    y = np.concatenate([photo[..., ch].ravel() for ch in range(channels)])
    ww = np.tile(w, channels)
    sol = _lstsq(x * ww[:, None], y * ww)
    return float(sol[-1] / sol[0]) if sol is not None and sol[0] > 0.05 else float("nan")


def difference(
    first: "np.ndarray", second: "np.ndarray", first_to_second: "np.ndarray", box: tuple[float, float, float, float]
) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """Two references (BGR) in ``first``'s comparison frame at :data:`TWIN_SIDE`, ``second`` fitted to
    ``first``'s exposure, and the mask (uint8) of where they differ."""
    import cv2
    import numpy as np

    a = reference_frame(first.astype(np.float32), box, side=TWIN_SIDE)
    b = reference_frame(second.astype(np.float32), box, first_to_second, side=TWIN_SIDE)
    known = np.isfinite(b).all(axis=2)
    a = cv2.GaussianBlur(a, (0, 0), TWIN_BLUR)
    b = cv2.GaussianBlur(np.where(known[..., None], b, a), (0, 0), TWIN_BLUR)
    # the twins' own exposure may differ: fit b to a (gain, offset per channel) before comparing
    if known.sum() > 100:
        for ch in range(3):
            if float(b[..., ch][known].std()) > 1e-3:
                gain, offset = np.polyfit(b[..., ch][known], a[..., ch][known], 1)
                b[..., ch] = b[..., ch] * gain + offset
    mask = ((np.abs(a - b).max(axis=2) > TWIN_DIFF) & known).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    return a, b, mask


def twins(
    photo: "np.ndarray",
    ref_to_photo: "np.ndarray",
    first: "np.ndarray",
    second: "np.ndarray",
    first_to_second: "np.ndarray",
    box: tuple[float, float, float, float],
) -> TwinVerdict:
    """Compare the photo with two references only where they differ from each other.

    ``first``/``second`` are BGR references; ``ref_to_photo`` maps ``first``'s pixels into the photo,
    ``first_to_second`` maps ``first``'s pixels into ``second``'s; ``box`` is ``first``'s content box.
    Each region where the twins differ is aligned (a shift of a few pixels) and the photo there is
    explained as a blend of the two, with its own gain and offset (lighting); colour counts, since a
    foil sheen or a rarity stamp changes hue more than brightness.
    """
    import cv2
    import numpy as np

    a, b, mask = difference(first, second, first_to_second, box)
    differing = float(mask.mean())
    if mask.sum() < 12:
        return TwinVerdict(differing, float("nan"))
    warped, inside = warp_photo(photo, ref_to_photo, box, TWIN_SIDE, TWIN_SHIFT, colour=True)
    pw = cv2.GaussianBlur(warped, (0, 0), TWIN_BLUR)
    grown = cv2.dilate(mask, np.ones((9, 9), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(grown)
    p = TWIN_SHIFT
    blends: list[float] = []
    weights: list[float] = []
    for x, y, w, h in _pieces(stats[1:n]):
        if inside[y + p : y + h + p, x + p : x + w + p].mean() < MIN_VISIBLE:
            continue
        seen = warped[y + p : y + h + p, x + p : x + w + p]
        if float((seen.min(axis=2) >= GLARE).mean()) >= 0.3:  # washed out by glare
            continue
        pa, pb = a[y : y + h, x : x + w], b[y : y + h, x : x + w]
        middle = np.ascontiguousarray((pa + pb) / 2)
        if float(middle.std()) < 1e-3:
            continue
        search = pw[y : y + h + 2 * p, x : x + w + 2 * p]
        _, _, _, (dx, dy) = cv2.minMaxLoc(cv2.matchTemplate(search, middle, cv2.TM_CCOEFF_NORMED))
        t = _blend(search[dy : dy + h, dx : dx + w], pa, pb, mask[y : y + h, x : x + w] + 0.1)
        if np.isfinite(t):
            blends.append(t)
            weights.append(float(mask[y : y + h, x : x + w].sum()))
    if not weights:
        return TwinVerdict(differing, float("nan"))
    return TwinVerdict(differing, _weighted_median(blends, weights))


def _pieces(stats: "np.ndarray") -> "list[tuple[int, int, int, int]]":
    """Differing regions (x, y, w, h) cut into pieces at most about :data:`TWIN_CELL` wide.

    Lighting is fitted per piece: over a whole foil-covered artwork, glare and a sleeve's haze vary
    more than one gain and offset can follow.
    """
    import numpy as np

    out: list[tuple[int, int, int, int]] = []
    for x, y, w, h, _area in stats:
        if w < 6 or h < 6:
            continue
        nx, ny = max(1, round(w / TWIN_CELL)), max(1, round(h / TWIN_CELL))
        xs = np.linspace(x, x + w, nx + 1).astype(int)
        ys = np.linspace(y, y + h, ny + 1).astype(int)
        out += [
            (int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))
            for r in range(ny)
            for c in range(nx)
        ]
    return out


def _weighted_median(values: list[float], weights: list[float]) -> float:
    """The value below and above which half the weight lies (a few pieces under glare do not drag it)."""
    import numpy as np

    order = np.argsort(values)
    v, w = np.asarray(values, np.float64)[order], np.asarray(weights, np.float64)[order]
    return float(v[np.searchsorted(np.cumsum(w), 0.5 * w.sum())])


REGION_CELL = 32  # comparison pixels (at TWIN_SIDE): a region is checked in cells at most this wide
REGION_BLUR = 0.8  # sigma at TWIN_SIDE: phone blur and resampling differ from the reference's
REGION_CONTEXT = 12  # comparison pixels around a cell that must agree for the cell to count as seen
CONTEXT_AGREE = 0.5  # the surroundings' unexplained fraction above which the cell is hidden (a finger)
SAME_PRINT = 0.15  # an alternative explaining the reference itself this well is the same print there


@dataclass
class RegionCell:
    """One cell of a variant region: how well the reference, and the best other print, explain the photo."""

    reference: float  # unexplained fraction under the reference (0 = it, 1 = nothing like it)
    other: float  # the same under the best known other print there (NaN: none known)


def region_cells(
    photo: "np.ndarray",
    ref_to_photo: "np.ndarray",
    reference: "np.ndarray",
    box: tuple[float, float, float, float],
    regions: "np.ndarray",
    others: "list[np.ndarray]",
) -> "list[RegionCell]":
    """Compare the photo with the reference in every cell of ``regions``; hidden cells are left out.

    ``regions`` (float, any size) covers ``box`` in normalised coordinates: where this collection's
    variants differ from each other (a set code, a rarity stamp). ``others`` are prints known to
    differ there (BGR, the comparison frame, any size). Each cell is aligned (a shift of a few
    pixels) and the photo there is fitted as one gain times the print plus an offset per channel
    (lighting), weighted towards ``regions``. A cell whose surroundings do not look like the
    reference either (a finger, glare, a sleeve's edge) is hidden, not contradicting.
    """
    import cv2
    import numpy as np

    a = reference_frame(reference.astype(np.float32), box, side=TWIN_SIDE)
    a = cv2.GaussianBlur(np.nan_to_num(a, nan=0.0), (0, 0), REGION_BLUR)
    h, w = a.shape[:2]
    weight = cv2.resize(regions.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    alts = [
        cv2.GaussianBlur(cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32), (0, 0), REGION_BLUR)
        for o in others
    ]
    p = REGION_CONTEXT
    warped, inside = warp_photo(photo, ref_to_photo, box, TWIN_SIDE, p, colour=True)
    pw = cv2.GaussianBlur(warped, (0, 0), REGION_BLUR)
    grown = cv2.dilate((weight > 0.5).astype(np.uint8), np.ones((9, 9), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(grown)
    out: list[RegionCell] = []
    for x0, y0, cw, ch, _area in stats[1:n]:
        nx, ny = max(1, round(cw / REGION_CELL)), max(1, round(ch / REGION_CELL))
        xs = np.linspace(x0, x0 + cw, nx + 1).astype(int)
        ys = np.linspace(y0, y0 + ch, ny + 1).astype(int)
        for r in range(ny):
            for c in range(nx):
                x, y, xe, ye = xs[c], ys[r], xs[c + 1], ys[r + 1]
                if xe - x < 6 or ye - y < 6 or grown[y:ye, x:xe].mean() < 0.3:
                    continue
                cell = _cell(a, alts, pw, warped, inside, weight, (x, y, xe, ye))
                if cell is not None:
                    out.append(cell)
    return out


def _cell(
    a: "np.ndarray",
    alts: "list[np.ndarray]",
    pw: "np.ndarray",
    warped: "np.ndarray",
    inside: "np.ndarray",
    weight: "np.ndarray",
    rect: tuple[int, int, int, int],
) -> "RegionCell | None":
    """One cell's comparison; None when the photo does not show it (outside, glare, hidden, flat)."""
    import cv2
    import numpy as np

    x, y, xe, ye = rect
    h, w = a.shape[:2]
    p = REGION_CONTEXT
    # the cell with its surroundings, in the reference's frame and (padded by p) in the photo's
    cx, cy, cxe, cye = max(0, x - p), max(0, y - p), min(w, xe + p), min(h, ye + p)
    if inside[cy + p : cye + p, cx + p : cxe + p].mean() < MIN_VISIBLE:
        return None
    seen = warped[cy + p : cye + p, cx + p : cxe + p]
    if float((seen.min(axis=2) >= GLARE).mean()) >= 0.2:  # washed out by glare
        return None
    ref = a[cy:cye, cx:cxe]
    if float(ref.std()) < MIN_STD:
        return None
    s = TWIN_SHIFT
    search = pw[cy + p - s : cye + p + s, cx + p - s : cxe + p + s]
    _, _, _, (dx, dy) = cv2.minMaxLoc(cv2.matchTemplate(search, np.ascontiguousarray(ref), cv2.TM_CCOEFF_NORMED))
    got = search[dy : dy + cye - cy, dx : dx + cxe - cx]
    inner = np.zeros(ref.shape[:2], np.float32)
    inner[y - cy : ye - cy, x - cx : xe - cx] = 1.0
    wcell = inner * (weight[cy:cye, cx:cxe] + 0.1)
    if _unexplained(got, ref, (1.0 - inner) + 1e-3) > CONTEXT_AGREE:
        return None  # the surroundings do not look like the reference: hidden (a finger), not another print
    mine = _unexplained(got, ref, wcell)
    other = float("nan")
    for alt in alts:
        patch = alt[cy:cye, cx:cxe]
        if _unexplained(patch, ref, wcell) < SAME_PRINT:
            continue  # the same as the reference here: no alternative
        other = np.nanmin([other, _unexplained(got, patch, wcell)])
    return RegionCell(mine, float(other))


def _unexplained(got: "np.ndarray", ref: "np.ndarray", weight: "np.ndarray") -> float:
    """The fraction of ``got``'s (weighted) variance that one gain times ``ref`` plus an offset per channel
    does not explain: 0 the same, 1 nothing alike (a flat ``got`` is explained by anything)."""
    import numpy as np

    channels = ref.shape[2]
    wv = weight.ravel().astype(np.float64)
    n = wv.size
    x = np.zeros((n * channels, channels + 1))
    for ch in range(channels):
        x[ch * n : (ch + 1) * n, 0] = ref[..., ch].ravel()
        x[ch * n : (ch + 1) * n, 1 + ch] = 1.0
    y = np.concatenate([got[..., ch].ravel() for ch in range(channels)]).astype(np.float64)
    ww = np.sqrt(np.tile(wv, channels))
    sol = _lstsq(x * ww[:, None], y * ww)
    if sol is None:
        return 1.0  # nothing could be fitted: count it as unexplained (never towards an accept)
    means = np.concatenate([np.full(n, np.average(got[..., ch].ravel(), weights=wv)) for ch in range(channels)])
    total = float((((y - means) * ww) ** 2).sum())
    if total < 1e-6 * wv.sum() * channels * 25:  # flat (std < ~0.2 grey levels)
        return 0.0
    if sol[0] <= 0.05:
        return 1.0
    return float(min(1.0, (((y - x @ sol) * ww) ** 2).sum() / total))
