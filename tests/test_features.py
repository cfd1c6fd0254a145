import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from cover_id.features import (
    DEFAULT_CONTRAST,
    DEFAULT_MAX_FEATURES,
    LOW_CONTRAST_KEYPOINTS,
    Features,
    desc_float,
    extract_features,
    features_at,
    pack_features,
    unpack_features,
)


def textured(seed: int, w: int = 300, h: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    for _ in range(60):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(4, 30)), c, -1)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 50)), y + int(rng.integers(5, 50))), c, -1)
    return img


def test_extract_rootsift_shapes_and_norm():
    f = extract_features(textured(0), max_side=640, max_features=300)
    assert 50 < len(f) <= 300
    assert f.xy.dtype == np.float32 and f.xy.shape == (len(f), 2)
    assert f.desc.dtype == np.uint8 and f.desc.shape == (len(f), 128)
    assert f.size == (300, 400)
    norms = np.linalg.norm(desc_float(f.desc), axis=1)
    assert np.allclose(norms, 1.0, atol=0.03)


def test_coords_are_in_input_pixels_after_downscale():
    img = textured(1)
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    f = extract_features(big, max_side=400, max_features=500)
    assert f.size == (900, 1200)
    assert f.xy[:, 0].max() > 600 and f.xy[:, 1].max() > 800  # spans the big image
    small = extract_features(img, max_side=400, max_features=500)
    # strongest keypoints of the downscaled copy land on the original's keypoints x3
    d = np.linalg.norm(f.xy[:50, None, :] / 3.0 - small.xy[None, :, :], axis=2).min(axis=1)
    assert np.median(d) < 2.0


def test_blank_image_gives_empty_features():
    f = extract_features(np.zeros((100, 80, 3), np.uint8))
    assert len(f) == 0 and f.size == (80, 100) and f.desc.shape == (0, 128)


def test_pack_unpack_round_trip():
    fs = [extract_features(textured(s)) for s in range(3)]
    fs.insert(1, extract_features(np.zeros((50, 50, 3), np.uint8)))
    packed = pack_features(fs)
    assert packed["desc"].dtype == np.uint8 and packed["offsets"][-1] == sum(len(f) for f in fs)
    back = unpack_features(packed)
    assert len(back) == 4
    for a, b in zip(fs, back):
        assert a.size == b.size
        np.testing.assert_array_equal(a.xy, b.xy)
        np.testing.assert_array_equal(a.desc, b.desc)
    np.testing.assert_array_equal(features_at(packed, 2).desc, fs[2].desc)
    assert unpack_features(pack_features([])) == []
    assert isinstance(back[0], Features)


def faded(img: np.ndarray, contrast: float) -> np.ndarray:
    """``img`` with its contrast around mid-grey cut to ``contrast`` (a photo through glass, in a dim room)."""
    return np.clip(128.0 + (img.astype(np.float32) - 128.0) * contrast, 0, 255).round().astype(np.uint8)


def test_image_with_contrast_is_described_at_the_default_threshold():
    img = cv2.resize(np.hstack([textured(1), textured(3)]), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    a, b = extract_features(img, 640, 1000, DEFAULT_CONTRAST), extract_features(img, 640, 1000)
    assert len(a) >= LOW_CONTRAST_KEYPOINTS
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.desc, b.desc)


def test_low_contrast_image_is_described_again_and_matches_its_reference():
    from cover_id.rerankers.geometric import GeometricReranker

    ref = textured(2)
    photo = cv2.resize(faded(ref, 0.1), None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
    plain, again = extract_features(photo, 640, 1000, DEFAULT_CONTRAST), extract_features(photo, 640, 1000)
    assert len(plain) < LOW_CONTRAST_KEYPOINTS <= len(again)
    reranker, ref_feats = GeometricReranker(), extract_features(ref, 640, 1000, DEFAULT_CONTRAST)
    before, after = reranker.match(plain, ref_feats), reranker.match(again, ref_feats)
    assert after.inliers > 2 * max(before.inliers, 10) and after.score > before.score


def test_extracted_keypoints_carry_their_response_and_the_strongest_keep_order():
    from cover_id.features import strongest

    f = extract_features(textured(3), max_side=640, max_features=300)
    assert f.response is not None and f.response.shape == (len(f),) and (f.response > 0).all()
    top = strongest(f, 40)
    assert len(top) == 40 and top.size == f.size
    # the 40 highest responses, in the order they were extracted
    keep = np.flatnonzero(f.response >= np.sort(f.response)[-40])
    assert np.array_equal(top.xy, f.xy[keep[:40]]) and np.array_equal(top.desc, f.desc[keep[:40]])
    assert top.response.min() >= np.delete(f.response, keep[:40]).max()
    assert strongest(f, len(f)) is f and strongest(f, 0) is f
    # keypoints read back from an index have no response: nothing to rank by, all of them are kept
    stored = unpack_features(pack_features([f]))[0]
    assert stored.response is None and strongest(stored, 40) is stored


# ---- split extraction (photos: two halves described at once, issue 12) ----------------------------


def keypoint_set(f: Features) -> set[tuple[float, float]]:
    """Keypoint positions (SIFT repeats a position for each of its orientations)."""
    return {(round(float(x), 1), round(float(y), 1)) for x, y in f.xy}


@pytest.mark.parametrize("shape", [(480, 640), (640, 480)])
def test_split_extraction_is_bounded_deterministic_and_close(shape: tuple[int, int]) -> None:
    """Cut along the longer side (x for landscape, y for portrait): the same budget, the same answer
    every time, strongest first, and nearly the keypoints of the image described in one piece."""
    h, w = shape
    img = cv2.resize(textured(7, 300, 300), (w, h), interpolation=cv2.INTER_CUBIC)
    one = extract_features(img, max_features=400)
    with ThreadPoolExecutor(2) as pool:
        split = extract_features(img, max_features=400, split=True, pool=pool)
        again = extract_features(img, max_features=400, split=True, pool=pool)
    in_turn = extract_features(img, max_features=400, split=True)  # no pool: one thread, the same keypoints
    assert 0 < len(split) <= 400 and len(one) == 400
    for other in (again, in_turn):
        assert np.array_equal(split.xy, other.xy) and np.array_equal(split.desc, other.desc)
    assert split.response is not None and np.all(np.diff(split.response) <= 0)
    assert split.size == (w, h)
    assert len(keypoint_set(one) & keypoint_set(split)) >= 0.9 * len(keypoint_set(one))
    far = split.xy[:, 0 if w > h else 1] > 0.75 * max(w, h)  # keypoints of the second half are in image pixels
    assert far.any()


def test_split_extraction_does_not_wait_for_a_busy_pool() -> None:
    """The pool's only worker is busy: the second half is described on the calling thread instead."""
    img = cv2.resize(textured(8, 300, 300), (640, 480), interpolation=cv2.INTER_CUBIC)
    with ThreadPoolExecutor(1) as pool:
        with ThreadPoolExecutor(1) as free:
            expected = extract_features(img, split=True, pool=free)
        gate = threading.Event()
        blocker = pool.submit(gate.wait, 60)
        got = extract_features(img, split=True, pool=pool)
        gate.set()
        blocker.result()
    assert np.array_equal(got.xy, expected.xy) and np.array_equal(got.desc, expected.desc)


@pytest.mark.slow
def test_split_extraction_on_real_photos(dvd: Path) -> None:
    """On real 1600x1200 DVD photos nearly every keypoint (>= 95 %) is the one-piece keypoint."""
    from cover_id.imageio import read_sized

    with ThreadPoolExecutor(2) as pool:
        for n in (1, 2, 10):
            image, _ = read_sized(dvd / "photos" / f"e63_{n:03d}.jpg", max_side=800)
            one = extract_features(image, contrast=DEFAULT_CONTRAST)
            split = extract_features(image, contrast=DEFAULT_CONTRAST, split=True, pool=pool)
            assert len(split) <= DEFAULT_MAX_FEATURES
            assert len(keypoint_set(one) & keypoint_set(split)) >= 0.95 * len(keypoint_set(one)), n
