from pathlib import Path

import cv2
import numpy as np
import pytest
from test_features import textured

from cover_id.features import extract_features
from cover_id.imageio import read_image
from cover_id.rerankers.geometric import (
    GeometricParams,
    GeometricReranker,
    GeomMatch,
    Thresholds,
    _quad_sane,
    decide,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dvd-covers"


def warp_into_scene(img: np.ndarray, seed: int):
    """Paste img with a perspective warp into a larger cluttered scene; returns scene, corners."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[120, 80], [430, 110], [450, 520], [90, 490]])
    H = cv2.getPerspectiveTransform(src, dst)
    scene = cv2.GaussianBlur(textured(seed, 640, 600), (0, 0), 3)
    warped = cv2.warpPerspective(img, H, (640, 600))
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, (640, 600))
    scene[mask > 0] = warped[mask > 0]
    return scene, dst


def test_warped_copy_matches_with_accurate_homography():
    ref_img = textured(10)
    scene, corners = warp_into_scene(ref_img, 99)
    ref, q = extract_features(ref_img), extract_features(scene)
    m = GeometricReranker().match(q, ref, ref_index=7)
    assert m.ref_index == 7 and m.sane and m.inliers >= 30 and m.spread > 0.3
    w, h = ref.size
    proj = cv2.perspectiveTransform(np.float32([[[0, 0]], [[w, 0]], [[w, h]], [[0, h]]]), m.homography)
    assert np.abs(proj.reshape(4, 2) - corners).max() < 4.0
    assert m.score >= Thresholds().accept_score


def test_unrelated_image_is_rejected_and_ranked_last():
    ref_img, other_img = textured(10), textured(11)
    scene, _ = warp_into_scene(ref_img, 98)
    q = extract_features(scene)
    ranked = GeometricReranker().rerank(q, [(0, extract_features(other_img)), (1, extract_features(ref_img))])
    assert [m.ref_index for m in ranked] == [1, 0]
    assert ranked[1].score < Thresholds().review_score
    assert decide(ranked[0], ranked[1], 0.5) == "accept"
    assert decide(ranked[1], None, 0.5) == "reject"


def test_mirrored_copy_is_not_accepted():
    ref_img = textured(12)
    m = GeometricReranker().match(extract_features(ref_img[:, ::-1].copy()), extract_features(ref_img))
    assert m.score < Thresholds().review_score


def test_homography_sanity():
    p = GeometricParams()
    size = (300, 400)
    assert _quad_sane(np.diag([0.8, 0.8, 1.0]), size, (640, 480), p)
    assert not _quad_sane(
        np.diag([-1.0, 1.0, 1.0]) @ np.array([[1, 0, -300], [0, 1, 0], [0, 0, 1.0]]), size, (640, 480), p
    )  # mirrored
    assert not _quad_sane(np.diag([0.02, 0.02, 1.0]), size, (640, 480), p)  # tiny
    assert not _quad_sane(np.diag([3.0, 0.1, 1.0]), size, (640, 480), p)  # wildly skewed
    assert not _quad_sane(np.array([[1, 0, 0], [0, 1, 0], [-0.01, 0, 1.0]]), size, (640, 480), p)  # crosses horizon


def test_empty_features_give_no_match():
    empty = extract_features(np.zeros((50, 50, 3), np.uint8))
    m = GeometricReranker().match(empty, extract_features(textured(1)))
    assert m.matches == 0 and m.homography is None and m.score == 0.0


def test_decide_rules():
    t = Thresholds()
    good = GeomMatch(ref_index=0, sane=True, score=0.7)
    close = GeomMatch(ref_index=1, sane=True, score=0.65)
    assert decide(good, None, 0.2, t) == "accept"
    assert decide(good, close, 0.2, t) == "review"  # two covers explain the photo
    assert decide(GeomMatch(ref_index=0, sane=True, score=0.35), None, 0.2, t) == "review"
    assert decide(GeomMatch(ref_index=0, sane=False, score=0.9), None, 0.2, t) == "reject"
    assert decide(None, None, 0.0, t) == "reject"


@pytest.mark.skipif(not (DATA / "photos").is_dir(), reason="dvd-covers data not present")
def test_real_photo_finds_its_cover_among_others():
    photo = extract_features(read_image(DATA / "photos" / "e63_004.jpg", max_side=640))
    refs = [extract_features(read_image(DATA / "references" / f"{i:03d}.jpg", max_side=640)) for i in (3, 4, 5)]
    ranked = GeometricReranker().rerank(photo, [(i, r) for i, r in zip((3, 4, 5), refs)])
    assert ranked[0].ref_index == 4 and ranked[0].sane
    assert decide(ranked[0], ranked[1], 0.5) == "accept"


def test_weak_match_explaining_little_of_its_outline_is_not_accepted():
    t = Thresholds()
    fragment = GeomMatch(ref_index=0, sane=True, score=0.5, detail={"explained": 0.05})
    assert decide(fragment, None, 0.5, t) == "review"  # another edition sharing the artwork
    assert decide(GeomMatch(ref_index=0, sane=True, score=0.5, detail={"explained": 0.2}), None, 0.5, t) == "accept"
    assert decide(GeomMatch(ref_index=0, sane=True, score=0.7, detail={"explained": 0.05}), None, 0.5, t) == "accept"
