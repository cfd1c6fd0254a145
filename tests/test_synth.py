"""Synthetic covers, scenes and photo augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cover_id.evaluate.synth import AugmentOptions, make_background, make_cover, photo_augment, place_in_scene

cv2.setNumThreads(1)


def test_cover_deterministic_and_sized() -> None:
    a, b = make_cover(7), make_cover(7)
    assert a.shape == (420, 300, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert make_cover(7, (200, 200)).shape == (200, 200, 3)


def test_covers_differ_and_have_features() -> None:
    sift = cv2.SIFT_create()
    covers = [make_cover(s) for s in range(4)]
    for c in covers:
        assert len(sift.detect(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), None)) >= 100
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(covers[i].astype(int) - covers[j].astype(int)).mean() > 30


def test_background_deterministic() -> None:
    a = make_background(3, (320, 240))
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, make_background(3, (320, 240)))
    assert not np.array_equal(a, make_background(4, (320, 240)))


def test_place_in_scene_corners_match_content() -> None:
    cover = make_cover(5, (300, 420))
    background = make_background(5, (640, 480))
    scene, corners = place_in_scene(cover, background, np.random.default_rng(1), cover_order=True)
    assert scene.shape == background.shape and corners.shape == (4, 2) and corners.dtype == np.float32
    assert (corners[:, 0] >= 0).all() and (corners[:, 0] <= 640).all()
    # Warping the cover-order corners back gives the cover.
    src = np.float32([[0, 0], [300, 0], [300, 420], [0, 420]])
    back = cv2.warpPerspective(scene, cv2.getPerspectiveTransform(corners, src), (300, 420))
    diff = np.abs(back[20:-20, 20:-20].astype(int) - cover[20:-20, 20:-20].astype(int)).mean()
    assert diff < 25
    # Deterministic for the same generator seed.
    scene2, corners2 = place_in_scene(cover, background, np.random.default_rng(1), cover_order=True)
    assert np.array_equal(scene, scene2) and np.array_equal(corners, corners2)


@pytest.mark.parametrize("options", [AugmentOptions.photo(), AugmentOptions.train(), AugmentOptions.none()])
def test_augment_keeps_shape_and_dtype(options: AugmentOptions) -> None:
    image = cv2.resize(make_cover(2), (500, 500))
    for seed in range(5):
        out = photo_augment(image, np.random.default_rng(seed), options=options)
        assert out.shape == image.shape and out.dtype == np.uint8
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert photo_augment(gray, np.random.default_rng(0), options=options).shape == gray.shape


def test_augment_deterministic_and_changes_image() -> None:
    image = cv2.resize(make_cover(2), (500, 500))
    a = photo_augment(image, np.random.default_rng(9))
    b = photo_augment(image, np.random.default_rng(9))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - image.astype(int)).mean() > 3
    same = photo_augment(image, np.random.default_rng(9), options=AugmentOptions.none())
    assert np.array_equal(same, image)
