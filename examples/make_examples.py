"""Generate the bundled example collection and photos (deterministic, offline).

covers/   eight synthetic items of different shapes: game cases (portrait),
          album sleeves (square), a landscape box set, trading cards
photos/   phone-like photos: each of five covers on a cluttered table (perspective,
          glare, blur, JPEG), one photo with two covers on it, and one photo of
          a cover that is NOT in the collection (cover-id must not accept it)

Run: python examples/make_examples.py [--force]
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from cover_id.evaluate.synth import AugmentOptions, make_background, make_cover, photo_augment, place_in_scene

HERE = Path(__file__).resolve().parent
ITEMS = [  # (filename, seed, (width, height))
    ("neon_drift_racing.jpg", 11, (300, 420)),
    ("castle_of_echoes.jpg", 12, (300, 420)),
    ("midnight_orchestra.jpg", 13, (400, 400)),
    ("ocean_tapes_vol_2.jpg", 14, (400, 400)),
    ("kepler_box_set.jpg", 15, (520, 370)),
    ("LOCH-JP001_dark_magician_ur.jpg", 16, (250, 364)),
    ("SDK-001_blue_eyes_white_dragon_scr.jpg", 17, (250, 364)),
    ("paper_moon_stories.jpg", 18, (280, 420)),
]
PHOTOS = [  # (photo name, item index, scene seed)
    ("table_neon_drift.jpg", 0, 101),
    ("desk_midnight_orchestra.jpg", 2, 102),
    ("sofa_kepler_box.jpg", 4, 103),
    ("hand_dark_magician.jpg", 5, 104),
    ("shelf_paper_moon.jpg", 7, 105),
]
NOT_IN_COLLECTION_SEED = 999


def _photo(cover: np.ndarray, seed: int, size: tuple[int, int] = (1280, 960)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scene, _ = place_in_scene(cover, make_background(seed, size), rng, scale_range=(0.45, 0.7), max_tilt=0.15)
    # The scene already has the geometry; add the camera's light, blur, noise and JPEG.
    camera = replace(AugmentOptions.photo(), background=0.0, occlusion=0.0, perspective=0.0, rotation_deg=0.0)
    return photo_augment(scene, rng, strength=0.6, options=camera)


def main(force: bool = False) -> None:
    covers, photos = HERE / "covers", HERE / "photos"
    if not force and covers.is_dir() and photos.is_dir() and any(photos.iterdir()):
        print(f"examples already present in {HERE} (use --force to regenerate)")
        return
    covers.mkdir(exist_ok=True)
    photos.mkdir(exist_ok=True)
    images = []
    for name, seed, size in ITEMS:
        img = make_cover(seed, size)
        images.append(img)
        cv2.imwrite(str(covers / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    for name, item, seed in PHOTOS:
        cv2.imwrite(str(photos / name), _photo(images[item], seed), [cv2.IMWRITE_JPEG_QUALITY, 85])
    # Two covers on one table (for --multi).
    rng = np.random.default_rng(201)
    scene = make_background(201, (1600, 900))
    left, _ = place_in_scene(images[1], scene[:, :800].copy(), rng, scale_range=(0.6, 0.75), max_tilt=0.1)
    right, _ = place_in_scene(images[3], scene[:, 800:].copy(), rng, scale_range=(0.6, 0.75), max_tilt=0.1)
    cv2.imwrite(
        str(photos / "two_covers_castle_and_ocean.jpg"), np.hstack([left, right]), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    # A cover that is not in the collection.
    stranger = make_cover(NOT_IN_COLLECTION_SEED, (300, 420))
    cv2.imwrite(str(photos / "not_in_collection.jpg"), _photo(stranger, 301), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {len(ITEMS)} covers to {covers} and {len(PHOTOS) + 2} photos to {photos}")


if __name__ == "__main__":
    main(force="--force" in sys.argv)
