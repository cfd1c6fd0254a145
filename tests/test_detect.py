"""Cover detection and rectification on synthetic scenes and real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cover_id.detectors.quad import Quad, QuadDetector, draw_quads, order_corners, rectify
from cover_id.evaluate.synth import make_background, make_cover, place_in_scene

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dvd-covers"

cv2.setNumThreads(1)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float32).ravel()
    b = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float32).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def _scene(seed: int, size: tuple[int, int], rotation: float):
    cover = make_cover(seed, size)
    rng = np.random.default_rng(seed)
    background = make_background(seed, (640, 480))
    # Rotate around `rotation` degrees, +-10, with a moderate camera tilt.
    scene, corners = place_in_scene(
        cover, background, rng, scale_range=(0.6, 0.8), max_tilt=0.12, max_rotation_deg=10.0
    )
    if rotation:
        k = int(round(rotation / 90)) % 4
        rot = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}[k]
        h, w = scene.shape[:2]
        scene = cv2.rotate(scene, rot)
        for _ in range(k):  # (x, y) -> (h - 1 - y, x) for a clockwise quarter turn
            corners = np.stack([h - 1 - corners[:, 1], corners[:, 0]], axis=1)
            h, w = w, h
        corners = order_corners(corners)
    return cover, scene, corners.astype(np.float32)


_WEAK = pytest.mark.xfail(
    reason="known weakness: a low-contrast cover side loses to a strong line inside the cover",
    strict=True,  # a fix must remove the marker: the test then guards it
)
CASES = [
    pytest.param(11, (300, 420), 0, marks=_WEAK),  # portrait
    (12, (400, 400), 0),  # square
    pytest.param(13, (420, 300), 0, marks=_WEAK),  # landscape
    (14, (300, 420), 90),  # portrait lying sideways
    pytest.param(15, (420, 300), 90, marks=_WEAK),
    pytest.param(16, (400, 400), 270, marks=_WEAK),
]
EASY = [(12, (400, 400), 0), (14, (300, 420), 90)]


@pytest.mark.parametrize("seed,size,rotation", CASES)
def test_finds_synthetic_cover_corners(seed: int, size: tuple[int, int], rotation: float) -> None:
    cover, scene, truth = _scene(seed, size, rotation)
    quads = QuadDetector().detect(scene)
    assert quads, "no cover found"
    quad = quads[0]
    assert quad.corners.shape == (4, 2) and quad.corners.dtype == np.float32
    assert 0.0 <= quad.score <= 1.0
    assert np.abs(quad.corners - truth).max() <= 4.0, (quad.corners, truth)


@pytest.mark.parametrize("seed,size,rotation", [tuple(getattr(c, "values", c)) for c in CASES])
def test_rectify_restores_cover(seed: int, size: tuple[int, int], rotation: float) -> None:
    cover, scene, truth = _scene(seed, size, rotation)
    flat = rectify(scene, truth, max_side=420)
    assert max(flat.shape[:2]) <= 420
    # The flat crop is the cover turned by a multiple of 90 degrees (corner order rule).
    best = max(
        _ncc(cv2.resize(np.rot90(cover, k).copy(), (flat.shape[1], flat.shape[0])), flat)
        for k in range(4)
        if (np.rot90(cover, k).shape[1] >= np.rot90(cover, k).shape[0]) == (flat.shape[1] >= flat.shape[0])
        or size[0] == size[1]
    )
    assert best > 0.9
    # Aspect estimated from the quad is close to the cover's.
    aspect_true = size[0] / size[1]
    aspect = flat.shape[1] / flat.shape[0]
    assert min(abs(aspect - aspect_true), abs(aspect - 1 / aspect_true)) < 0.08


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_finds_insert_inside_case(seed: int) -> None:
    """A cover inside a dark case border (a DVD case): the printed cover is found, not the case."""
    cover = make_cover(seed, (300, 420))
    border = 18
    case = cv2.copyMakeBorder(cover, border, border, border + 6, border, cv2.BORDER_CONSTANT, value=(28, 30, 32))
    rng = np.random.default_rng(seed)
    scene, outer = place_in_scene(
        case,
        make_background(seed, (640, 480)),
        rng,
        scale_range=(0.7, 0.8),
        max_tilt=0.1,
        max_rotation_deg=20.0,
        cover_order=True,
    )
    ch, cw = case.shape[:2]
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]]), outer)
    inner = np.float32(
        [[border + 6, border], [cw - border, border], [cw - border, ch - border], [border + 6, ch - border]]
    )
    truth = order_corners(cv2.perspectiveTransform(inner[None], matrix)[0])
    quads = QuadDetector().detect(scene)
    assert quads, "no cover found"
    assert np.abs(quads[0].corners - truth).max() <= 4.0, (quads[0].corners, truth)


def test_no_cover_in_plain_scene() -> None:
    """A cluttered table without a cover yields no quad (or only implausible ones)."""
    detector = QuadDetector()
    for seed in range(3):
        quads = detector.detect(make_background(seed, (640, 480)))
        assert all(q.score < 0.8 for q in quads)
    flat = np.full((480, 640, 3), 128, np.uint8)
    assert detector.detect(flat) == []


@pytest.mark.xfail(
    reason="multi-cover quad detection not yet reliable (identify --multi does not depend on it)", strict=True
)
def test_multi_covers_do_not_overlap() -> None:
    rng = np.random.default_rng(3)
    scene = make_background(3, (960, 480))
    for i, x0 in enumerate((0, 480)):
        half = scene[:, x0 : x0 + 480].copy()
        half, _ = place_in_scene(
            make_cover(40 + i, (300, 400)), half, rng, scale_range=(0.7, 0.8), max_tilt=0.1, max_rotation_deg=15
        )
        scene[:, x0 : x0 + 480] = half
    quads = QuadDetector().detect(scene, max_quads=3)
    assert len(quads) >= 2
    centers = sorted(float(q.corners[:, 0].mean()) for q in quads[:2])
    assert centers[0] < 480 < centers[1]


def test_order_corners_rule() -> None:
    pts = np.float32([[10, 10], [110, 12], [108, 200], [12, 198]])
    for k in range(4):
        shuffled = np.roll(pts, k, axis=0)[::-1]
        assert np.allclose(order_corners(shuffled), pts)


def test_draw_quads_keeps_shape() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    quad = Quad(np.float32([[10, 10], [100, 10], [100, 90], [10, 90]]), 0.9, 0.6)
    out = draw_quads(img, [quad])
    assert out.shape == img.shape and out.any() and not img.any()


def _best_ncc(image: np.ndarray, reference: np.ndarray) -> float:
    """NCC with the reference's content (white margins cut), best of 4 rotations."""
    gray = cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY)
    ys, xs = np.nonzero(gray < 235)
    content = reference[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    best = -1.0
    for k in range(4):
        rotated = np.ascontiguousarray(np.rot90(image, k))
        best = max(
            best,
            _ncc(
                cv2.resize(rotated, (64, 96), interpolation=cv2.INTER_AREA),
                cv2.resize(content, (64, 96), interpolation=cv2.INTER_AREA),
            ),
        )
    return best


@pytest.mark.skipif(not DATA.is_dir(), reason="dvd-covers data set not present")
@pytest.mark.parametrize("number", [1, 16, 22])
def test_real_photo_rectified_crop_matches_reference(number: int) -> None:
    from cover_id.imageio import read_image

    photo = read_image(DATA / "photos" / f"e63_{number:03d}.jpg", max_side=800)
    reference = read_image(DATA / "references" / f"{number:03d}.jpg")
    quads = QuadDetector().detect(photo)
    assert quads and quads[0].score >= 0.6
    flat = rectify(photo, quads[0].corners, max_side=500)
    # The flat crop looks like the reference; the whole photo does not.
    assert _best_ncc(flat, reference) > _best_ncc(photo, reference) + 0.25


def test_broken_collinear_segments_group_into_one_line_each() -> None:
    """Pieces of one straight edge (with gaps) make one line; a parallel edge 10 px away another."""
    from cover_id.detectors.quad import _gradients, _group_segments

    gray = np.zeros((300, 400), np.uint8)
    cv2.rectangle(gray, (50, 60), (350, 240), 255, -1)
    segs = []
    for x0 in (50, 130, 210, 290):  # the top edge, in four pieces with gaps
        segs.append([x0, 60, x0 + 60, 60])
    for x0 in (60, 200):  # a parallel edge 10 px below: not the same line
        segs.append([x0, 70, x0 + 100, 70])
    segs += [[50, 70, 50, 230], [350, 70, 350, 230], [60, 240, 340, 240]]  # the other three sides
    lines = _group_segments(np.array(segs, np.float32).reshape(-1, 1, 4), _gradients(gray), 10, 30.0)
    assert lines is not None
    assert len(lines.theta) == 5
    horizontal = np.abs(np.sin(lines.theta)) < 0.1
    ys = sorted(float(p[1]) for p in lines.point[horizontal])
    assert ys == pytest.approx([60.0, 70.0, 240.0], abs=0.5)
    top = int(np.argmin(np.where(horizontal, np.abs(lines.point[:, 1] - 60), np.inf)))
    assert lines.support[top] == pytest.approx(240.0, abs=2.0)  # four 60 px pieces, gaps not counted
