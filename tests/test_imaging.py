"""imageops, geometry and encode_references: the one copy of the small helpers other modules share."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from cover_id.encoders.base import Encoder
from cover_id.geometry import overlap as iou
from cover_id.geometry import overlap_over_smaller, polygon_area
from cover_id.imageops import DIM_MEDIAN, DIM_TARGET, brighten_dim, jpeg_thumbnail, median_grey, shrink


def test_shrink_only_ever_shrinks() -> None:
    img = np.zeros((300, 1200, 3), np.uint8)
    small = shrink(img, 600)
    assert small.shape == (150, 600, 3)
    assert shrink(img, 2000) is img and shrink(img, None) is img
    assert shrink(np.zeros((4, 4000), np.uint8), 100, min_side=8).shape == (8, 100)


def test_median_grey_is_the_median() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    exact = float(np.median(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)))
    assert abs(median_grey(img) - exact) <= 3
    assert median_grey(np.full((40, 40), 77, np.uint8)) == 77


def test_brighten_dim_lifts_only_dim_photos() -> None:
    rng = np.random.default_rng(1)
    lit = rng.integers(DIM_MEDIAN, 256, (300, 400, 3), dtype=np.uint8)
    assert brighten_dim(lit) is lit  # a normally exposed photo is not touched
    dim = (rng.random((300, 400, 3)) ** 2 * 90).astype(np.uint8)  # median grey about 20
    out = brighten_dim(dim)
    assert out.dtype == np.uint8 and out.shape == dim.shape
    assert abs(median_grey(out) - DIM_TARGET) <= 12
    order = np.argsort(dim.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # a tone curve: the order of tones is kept
    grey = cv2.cvtColor(dim, cv2.COLOR_BGR2GRAY)
    assert median_grey(brighten_dim(grey)) > 2 * median_grey(grey)
    on_a_dark_table = dim.copy()
    on_a_dark_table[100:200, 150:250] = 235  # a lit cover: dim by the median, but with highlights
    assert median_grey(on_a_dark_table) < DIM_MEDIAN and brighten_dim(on_a_dark_table) is on_a_dark_table
    assert brighten_dim(np.zeros((0, 0, 3), np.uint8)).size == 0
    four = np.zeros((20, 20, 4), np.uint8)
    assert brighten_dim(four) is four  # not a BGR photo: left for the steps that reject it


def test_jpeg_thumbnail_is_a_small_jpeg() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (400, 800, 3), dtype=np.uint8)
    data = jpeg_thumbnail(img, 160)
    assert data[:2] == b"\xff\xd8"
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == (80, 160, 3)


def test_polygon_helpers() -> None:
    a = np.float32([[0, 0], [100, 0], [100, 50], [0, 50]])
    b = np.float32([[50, 0], [150, 0], [150, 50], [50, 50]])
    inner = np.float32([[10, 10], [20, 10], [20, 20], [10, 20]])
    assert polygon_area(a) == pytest.approx(5000)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert overlap_over_smaller(a, b) == pytest.approx(0.5)
    assert overlap_over_smaller(a, inner) == pytest.approx(1.0)
    far = a + np.float32([500, 500])
    assert iou(a, far) == 0.0 and overlap_over_smaller(a, far) == 0.0


def test_encode_references_gives_features_to_a_feature_encoder() -> None:
    from cover_id.encoders import encode_references
    from cover_id.encoders.local import LocalEncoder
    from cover_id.evaluate.synth import make_cover
    from cover_id.features import extract_features

    covers = [make_cover(i, (200, 280)) for i in range(4)]
    feats = [extract_features(c) for c in covers]
    enc = LocalEncoder()
    enc.fit_features(feats)
    assert enc.supports_features
    got = encode_references(enc, covers)
    assert got.shape == (4, enc.dim) and got.dtype == np.float32
    assert np.allclose(got, enc.encode_features(feats), atol=1e-6)
    assert np.allclose(encode_references(enc, [], features=feats), got, atol=1e-6)


class MeanColour(Encoder):
    """A pixel encoder (no keypoint support): mean BGR per image."""

    name = "mean-colour"

    @property
    def dim(self) -> int:
        return 3

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dim": 3}

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([im.reshape(-1, 3).mean(axis=0) for im in images]).astype(np.float32)


def test_encode_references_gives_pixels_to_a_pixel_encoder() -> None:
    from cover_id.encoders import encode_references
    from cover_id.evaluate.synth import make_cover

    enc = MeanColour()
    covers = [make_cover(i, (200, 280)) for i in range(2)]
    got = encode_references(enc, covers)
    assert got.shape == (2, 3) and np.allclose(got, enc.encode_images(covers))
