"""Deterministic synthetic covers, scenes and phone-photo augmentation.

Used by the tests, the examples, the ``verify`` self-test and ``train``.
Sizes are ``(width, height)`` like OpenCV; every random choice comes from a
seed or a caller-supplied :class:`numpy.random.Generator`, so results are
reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from cover_id.detectors.quad import order_corners

__all__ = [
    "AugmentOptions",
    "make_background",
    "make_cover",
    "photo_augment",
    "place_in_scene",
]

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    b, g, r = (int(v) for v in rng.integers(lo, hi, 3))
    return b, g, r


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int, channels: int = 1) -> np.ndarray:
    """Float32 noise in [0, 1] with features about (size / cells) px wide."""
    cw, ch = max(2, cells), max(2, round(cells * h / max(w, 1)))
    small = rng.random((ch, cw, channels), dtype=np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    out = out.reshape(h, w, channels) if channels > 1 else out.reshape(h, w)
    return np.clip(out, 0.0, 1.0)


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Linear or radial gradient between two random colours, float32 BGR."""
    c0 = np.array(_color(rng), np.float32)
    c1 = np.array(_color(rng), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _random_text(rng: np.random.Generator, lo: int, hi: int) -> str:
    words = []
    for _ in range(int(rng.integers(1, 3))):
        words.append("".join(rng.choice(_LETTERS, int(rng.integers(lo, hi)))))
    return " ".join(words)


def _put_text_fit(
    img: np.ndarray,
    text: str,
    rng: np.random.Generator,
    box: tuple[int, int, int, int],
    color: tuple[int, int, int],
    outline: tuple[int, int, int] | None,
) -> None:
    """Draw text scaled to fit the box (x, y, w, h)."""
    x, y, bw, bh = box
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    thickness = int(rng.integers(1, 4))
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = max(0.3, min(bw / max(tw, 1), bh / max(th, 1)))
    thickness = max(1, round(thickness * scale))
    org = (x, y + int(th * scale))
    if outline is not None:
        cv2.putText(img, text, org, font, scale, outline, thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, font, scale, color, thickness, cv2.LINE_AA)


def _draw_shape(img: np.ndarray, rng: np.random.Generator, size_frac: float) -> None:
    h, w = img.shape[:2]
    color = _color(rng)
    r = max(3, int(min(w, h) * size_frac * rng.uniform(0.3, 1.0)))
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    kind = int(rng.integers(5))
    filled = -1 if rng.random() < 0.7 else int(rng.integers(2, 6))
    if kind == 0:
        cv2.circle(img, (cx, cy), r, color, filled, cv2.LINE_AA)
    elif kind == 1:
        axes = (r, max(2, int(r * rng.uniform(0.2, 0.9))))
        cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, filled, cv2.LINE_AA)
    elif kind == 2:
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        if filled < 0:
            cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
        else:
            cv2.polylines(img, [pts], True, color, filled, cv2.LINE_AA)
    elif kind == 3:
        box = cv2.boxPoints(((cx, cy), (2 * r, r * rng.uniform(0.3, 1.5)), float(rng.uniform(0, 180))))
        cv2.fillPoly(img, [box.astype(np.int32)], color, cv2.LINE_AA)
    else:
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, (cx, cy), p2, color, int(rng.integers(1, 6)), cv2.LINE_AA)


def _pattern(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A uint8 mask (0/255) with stripes, checks or dots."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(6, 30)
    kind = int(rng.integers(3))
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        v = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period) > 0
    elif kind == 1:
        v = ((xs // period).astype(int) + (ys // period).astype(int)) % 2 == 0
    else:
        v = np.hypot(xs % period - period / 2, ys % period - period / 2) < period * 0.3
    return (v * 255).astype(np.uint8)


def make_cover(seed: int, size: tuple[int, int] = (300, 420)) -> np.ndarray:
    """A texture-rich synthetic cover (BGR uint8, ``size`` = (width, height)).

    Gradient background, a patterned panel, random shapes, a smooth texture,
    a large title and small text lines: plenty of distinctive local features,
    and different seeds give clearly different items.
    """
    w, h = size
    rng = np.random.default_rng([seed, 0xC0FE])
    img = _gradient(rng, w, h)
    texture = _smooth_noise(rng, w, h, int(rng.integers(6, 20)), 3)
    img = img * 0.75 + texture * 255 * 0.25
    img = np.clip(img, 0, 255).astype(np.uint8)
    # A patterned panel somewhere on the cover.
    px0, py0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    px1, py1 = int(rng.integers(px0 + w // 4, w + 1)), int(rng.integers(py0 + h // 4, h + 1))
    mask = _pattern(rng, px1 - px0, py1 - py0)
    panel = img[py0:py1, px0:px1]
    panel[mask > 0] = (0.4 * panel[mask > 0] + 0.6 * np.array(_color(rng))).astype(np.uint8)
    for _ in range(int(rng.integers(8, 18))):
        _draw_shape(img, rng, 0.35)
    for _ in range(int(rng.integers(10, 25))):
        _draw_shape(img, rng, 0.08)
    # Title and small print.
    title_y = int(rng.uniform(0.05, 0.6) * h)
    _put_text_fit(
        img,
        _random_text(rng, 3, 8),
        rng,
        (int(0.06 * w), title_y, int(0.88 * w), int(0.14 * h)),
        _color(rng, 128),
        (0, 0, 0) if rng.random() < 0.6 else None,
    )
    for _ in range(int(rng.integers(2, 6))):
        y = int(rng.uniform(0.02, 0.92) * h)
        _put_text_fit(
            img,
            _random_text(rng, 2, 7),
            rng,
            (int(0.05 * w), y, int(rng.uniform(0.3, 0.9) * w), int(0.04 * h)),
            _color(rng),
            None,
        )
    if rng.random() < 0.5:
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), _color(rng), int(rng.integers(2, 8)))
    return img


def make_background(seed: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A cluttered table / desk scene without a cover (BGR uint8, (width, height)).

    Wood-like grain or fabric, soft clutter objects (blobs, cables, pens,
    scraps of text, low-contrast paper sheets), a lighting gradient. Clutter
    avoids crisp high-contrast rectangles so the cover stays the strongest one.
    """
    w, h = size
    rng = np.random.default_rng([seed, 0xBA6])
    base = np.array(_color(rng, 60, 220), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:  # wood grain
        angle = rng.uniform(0, np.pi)
        warp = _smooth_noise(rng, w, h, 4) * rng.uniform(20, 60)
        coord = xs * np.cos(angle) + ys * np.sin(angle) + warp
        grain = 0.5 + 0.5 * np.sin(coord * 2 * np.pi / rng.uniform(8, 30))
        img = base[None, None, :] * (0.8 + 0.25 * grain[..., None])
    else:  # fabric / desk mat
        img = base[None, None, :] * (0.75 + 0.5 * _smooth_noise(rng, w, h, 40)[..., None])
    img = np.clip(img + rng.normal(0, 4, (h, w, 1)).astype(np.float32), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 10))):
        kind = rng.random()
        color = _color(rng)
        if kind < 0.35:  # soft blob (mug, mouse, mat)
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            axes = (int(rng.uniform(0.05, 0.2) * w), int(rng.uniform(0.05, 0.2) * h))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif kind < 0.55:  # cable
            pts = np.cumsum(rng.normal(0, 0.08 * min(w, h), (8, 2)), axis=0) + [rng.uniform(0, w), rng.uniform(0, h)]
            cv2.polylines(img, [pts.astype(np.int32)], False, color, int(rng.integers(2, 6)), cv2.LINE_AA)
        elif kind < 0.7:  # text scrap
            x, y = int(rng.uniform(0, 0.7) * w), int(rng.uniform(0, 0.9) * h)
            _put_text_fit(img, _random_text(rng, 2, 6), rng, (x, y, int(0.3 * w), int(0.05 * h)), color, None)
        elif kind < 0.85:  # paper sheet, low contrast with the table, partly off-frame
            tone = img[min(h - 1, h // 2), min(w - 1, w // 2)].astype(np.float32)
            sheet = tuple(int(v) for v in np.clip(tone + rng.uniform(10, 35), 0, 255))
            center = (rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h)
            box = cv2.boxPoints((center, (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h), rng.uniform(0, 90)))
            cv2.fillPoly(img, [box.astype(np.int32)], sheet, cv2.LINE_AA)
        else:  # pen
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            ang = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.1, 0.3) * min(w, h)
            p2 = (int(p1[0] + length * np.cos(ang)), int(p1[1] + length * np.sin(ang)))
            cv2.line(img, p1, p2, color, int(rng.integers(4, 10)), cv2.LINE_AA)
    light = _smooth_noise(rng, w, h, 2) * 0.5 + 0.75
    return np.clip(img * light[..., None], 0, 255).astype(np.uint8)


def _random_quad(
    rng: np.random.Generator,
    cover_wh: tuple[int, int],
    scene_wh: tuple[int, int],
    scale_range: tuple[float, float],
    max_tilt: float,
    max_rotation_deg: float,
    margin: float,
) -> np.ndarray | None:
    """Destination corners (cover order TL, TR, BR, BL) for the cover in the scene."""
    cw, ch = cover_wh
    sw, sh = scene_wh
    # Scale: fraction of the scene's shorter side taken by the cover's longer side.
    frac = rng.uniform(*scale_range)
    s = frac * min(sw, sh) / max(cw, ch)
    half = np.array([[-cw, -ch], [cw, -ch], [cw, ch], [-cw, ch]], np.float64) * s / 2
    # Perspective: shrink the far side, as a tilted camera would.
    if max_tilt > 0:
        tilt = rng.uniform(-max_tilt, max_tilt, 2)
        half[:, 0] *= 1 + tilt[1] * np.sign(half[:, 1])
        half[:, 1] *= 1 + tilt[0] * np.sign(half[:, 0])
        half += rng.uniform(-1, 1, (4, 2)) * max_tilt * 0.15 * s * min(cw, ch)
    angle = np.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = half @ rot.T
    lo, hi = pts.min(0), pts.max(0)
    room_x = (sw * (1 - 2 * margin)) - (hi[0] - lo[0])
    room_y = (sh * (1 - 2 * margin)) - (hi[1] - lo[1])
    if room_x < 0 or room_y < 0:
        return None
    offset = np.array([sw * margin + rng.uniform(0, room_x) - lo[0], sh * margin + rng.uniform(0, room_y) - lo[1]])
    quad = (pts + offset).astype(np.float32)
    hull = cv2.convexHull(quad.reshape(-1, 1, 2), returnPoints=False)
    return quad if len(hull) == 4 else None


def place_in_scene(
    cover: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.45, 0.85),
    max_tilt: float = 0.2,
    max_rotation_deg: float = 180.0,
    margin: float = 0.03,
    cover_order: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Perspective-warp ``cover`` into a copy of ``background``.

    Returns (scene, corners): corners (4, 2) float32 in scene pixels, ordered
    like :class:`~cover_id.detectors.quad.QuadDetector` orders them (see
    :func:`order_corners`), or, with ``cover_order=True``, in the cover's own
    TL, TR, BR, BL order (warping them back gives the upright cover).
    """
    ch, cw = cover.shape[:2]
    sh, sw = background.shape[:2]
    quad = None
    for _ in range(50):
        quad = _random_quad(rng, (cw, ch), (sw, sh), scale_range, max_tilt, max_rotation_deg, margin)
        if quad is not None:
            break
    if quad is None:  # scale range too large for this scene: fall back to a centred fit
        quad = _random_quad(rng, (cw, ch), (sw, sh), (0.5, 0.5), 0.0, max_rotation_deg, 0.0)
        assert quad is not None
    src = np.asarray([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, np.asarray(quad, np.float32))
    warped = cv2.warpPerspective(cover, matrix, (sw, sh), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((ch, cw), 255, np.uint8), matrix, (sw, sh), flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    scene = (warped.astype(np.float32) * alpha + background.astype(np.float32) * (1 - alpha)).astype(np.uint8)
    corners = quad if cover_order else order_corners(quad)
    return scene, np.ascontiguousarray(corners, dtype=np.float32)


@dataclass(frozen=True)
class AugmentOptions:
    """Which photo effects :func:`photo_augment` applies (probabilities 0..1).

    Magnitudes scale with ``strength``. ``background`` composites the image
    as a perspective-warped, rotated, scaled item onto a cluttered scene of the
    same size; without it, ``perspective`` / ``rotation_deg`` / ``crop`` act on
    the image directly.
    """

    background: float = 0.6
    perspective: float = 0.7
    rotation_deg: float = 10.0
    crop: float = 0.0
    blur: float = 0.5
    noise: float = 0.6
    jpeg: float = 0.8
    lighting: float = 0.8
    glare: float = 0.3
    occlusion: float = 0.2
    color_jitter: float = 0.0
    grayscale: float = 0.0

    @classmethod
    def photo(cls) -> AugmentOptions:
        """A phone photo of the item (``verify``)."""
        return cls()

    @classmethod
    def train(cls) -> AugmentOptions:
        """Training views: photo effects plus crops, rotation +-20 deg, colour jitter, grayscale."""
        return cls(background=0.4, crop=0.5, rotation_deg=20.0, color_jitter=0.8, grayscale=0.1)

    @classmethod
    def none(cls) -> AugmentOptions:
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    def only(self, **kwargs: float) -> AugmentOptions:
        """A copy with the given fields changed."""
        return replace(self, **kwargs)


def _quick_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A cheap cluttered backdrop for augmentation (a few ms at 500 px)."""
    base = np.array(_color(rng, 40, 220), np.float32)
    tex = _smooth_noise(rng, w, h, int(rng.integers(8, 40)))
    img = base[None, None, :] * (0.7 + 0.6 * tex[..., None])
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        _draw_shape(img, rng, 0.25)
    return img


def photo_augment(
    image: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    options: AugmentOptions | None = None,
) -> np.ndarray:
    """Make ``image`` look like a phone photo of it; same shape and dtype (uint8).

    ``strength`` scales every magnitude (0 leaves geometry and colours almost
    unchanged); ``options`` picks which effects may apply (default: photo()).
    """
    opts = options or AugmentOptions.photo()
    st = float(max(0.0, strength))
    out = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    out = out.copy()

    if opts.crop and rng.random() < opts.crop:
        keep = 1.0 - rng.uniform(0, 0.3) * st
        cw_, ch_ = max(8, int(w * keep)), max(8, int(h * keep))
        x0, y0 = int(rng.integers(0, w - cw_ + 1)), int(rng.integers(0, h - ch_ + 1))
        out = cv2.resize(out[y0 : y0 + ch_, x0 : x0 + cw_], (w, h), interpolation=cv2.INTER_LINEAR)

    if opts.background and rng.random() < opts.background:
        backdrop = _quick_background(rng, w, h)
        out, _ = place_in_scene(
            out,
            backdrop,
            rng,
            scale_range=(1.0 - 0.45 * st, 1.0 - 0.1 * st),
            max_tilt=0.2 * st * (opts.perspective > 0),
            max_rotation_deg=opts.rotation_deg * st,
            margin=0.0,
        )
    else:
        if (opts.perspective and rng.random() < opts.perspective) or opts.rotation_deg:
            angle = np.radians(rng.uniform(-opts.rotation_deg, opts.rotation_deg) * st)
            src = np.asarray([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
            jitter = np.zeros((4, 2), np.float32)
            if opts.perspective and rng.random() < opts.perspective:
                jitter = rng.uniform(-0.08, 0.08, (4, 2)).astype(np.float32) * st * np.asarray([w, h], np.float32)
            center = np.asarray([w / 2, h / 2], np.float32)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
            dst = ((src + jitter - center) @ rot.T + center).astype(np.float32)
            matrix = cv2.getPerspectiveTransform(src, dst)
            out = cv2.warpPerspective(out, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)

    if opts.occlusion and rng.random() < opts.occlusion:  # a finger or object over an edge
        cx = int(rng.choice([rng.uniform(-0.05, 0.15), rng.uniform(0.85, 1.05)]) * w)
        cy = int(rng.uniform(0, 1) * h)
        axes = (int(rng.uniform(0.06, 0.14) * st * w) + 1, int(rng.uniform(0.12, 0.3) * st * h) + 1)
        skin = (int(rng.integers(90, 180)), int(rng.integers(120, 200)), int(rng.integers(170, 240)))
        cv2.ellipse(out, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, skin, -1, cv2.LINE_AA)

    f = out.astype(np.float32)
    if opts.lighting and rng.random() < opts.lighting:
        gain = 1.0 + rng.uniform(-0.35, 0.25) * st
        bias = rng.uniform(-20, 20) * st
        shade = 1.0 - 0.35 * st * _smooth_noise(rng, w, h, 2)
        white = 1.0 + rng.uniform(-0.08, 0.08, 3).astype(np.float32) * st  # white balance
        f = ((f * gain * white + bias) * shade[..., None]).astype(np.float32)
    if opts.color_jitter and rng.random() < opts.color_jitter:
        gray = f.mean(axis=2, keepdims=True)
        sat = 1.0 + rng.uniform(-0.4, 0.4) * st
        f = gray + (f - gray) * sat
        f = f * (1.0 + rng.uniform(-0.1, 0.1, 3).astype(np.float32) * st)
    if opts.glare and rng.random() < opts.glare:
        ys, xs = np.ogrid[0:h, 0:w]
        gx, gy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        sx, sy = rng.uniform(0.05, 0.2) * w, rng.uniform(0.05, 0.2) * h
        blob = np.exp(-(((xs - gx) / sx) ** 2 + ((ys - gy) / sy) ** 2)).astype(np.float32)
        f = f + blob[..., None] * rng.uniform(120, 255) * st
    out = np.clip(f, 0, 255).astype(np.uint8)

    if opts.blur and rng.random() < opts.blur:
        if rng.random() < 0.5:
            out = cv2.GaussianBlur(out, (0, 0), 0.3 + rng.uniform(0, 1.5) * st)
        else:  # hand shake: short motion blur
            k = max(1, round(rng.uniform(1, 7) * st))
            kernel = np.zeros((2 * k + 1, 2 * k + 1), np.float32)
            angle = rng.uniform(0, np.pi)
            c = k
            cv2.line(
                kernel,
                (int(c - k * np.cos(angle)), int(c - k * np.sin(angle))),
                (int(c + k * np.cos(angle)), int(c + k * np.sin(angle))),
                1.0,
                1,
            )
            out = cv2.filter2D(out, -1, kernel / kernel.sum())
    if opts.noise and rng.random() < opts.noise:
        sigma = rng.uniform(2, 8) * st
        out = np.clip(out.astype(np.float32) + rng.normal(0, sigma, out.shape).astype(np.float32), 0, 255).astype(
            np.uint8
        )
    if opts.grayscale and rng.random() < opts.grayscale:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if opts.jpeg and rng.random() < opts.jpeg:
        quality = int(np.clip(95 - rng.uniform(0, 65) * st, 20, 95))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    if image.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(out)
