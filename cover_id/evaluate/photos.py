"""Synthetic phone photos of references, reference images and report thumbnails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cover_id.imageops import jpeg_thumbnail, shrink

if TYPE_CHECKING:
    import numpy as np

    from cover_id.index.store import IndexStore

VIEW_MAX_SIDE = 640  # references are shrunk to this before being "photographed"
THUMB_SIDE = 160


def photo_view(cover: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """``cover`` as a phone would photograph it: on a cluttered table, tilted, lit, blurred.

    Lighting, glare and occlusion act on the cover itself; it is then
    perspective-warped, rotated and scaled into a background scene, and the
    whole scene gets blur, noise and JPEG compression.
    """
    from cover_id.evaluate.synth import AugmentOptions, make_background, photo_augment, place_in_scene

    cover = shrink(cover, VIEW_MAX_SIDE, min_side=8)
    h, w = cover.shape[:2]
    none = AugmentOptions.none()
    on_cover = none.only(lighting=0.8, glare=0.35, occlusion=0.4)
    cover = photo_augment(cover, rng, strength, on_cover)
    # The scene is a little larger than the cover, landscape like most phone photos.
    side = int(max(h, w) * rng.uniform(1.15, 1.5))
    scene_wh = (side, int(side * 0.75)) if rng.random() < 0.7 else (int(side * 0.75), side)
    background = make_background(int(rng.integers(1 << 30)), scene_wh)
    scene, _ = place_in_scene(
        cover,
        background,
        rng,
        scale_range=(0.6, 0.92),
        max_tilt=0.2 * strength,
        max_rotation_deg=25.0 * strength,
        margin=0.02,
    )
    on_scene = none.only(blur=0.6, noise=0.7, jpeg=0.9, lighting=0.4)
    return photo_augment(scene, rng, strength, on_scene)


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """A small JPEG for reports."""
    return jpeg_thumbnail(image, side, quality=80)


def reference_image(store: IndexStore, i: int) -> np.ndarray | None:
    """Reference ``i``'s image at up to 1024 px, or None when it cannot be read."""
    from cover_id.errors import ImageError
    from cover_id.imageio import read_image

    try:
        return read_image(store.image_path(i), max_side=1024)
    except ImageError:
        return None
