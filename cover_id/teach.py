"""Corrections that teach: a confirmed photo becomes an extra view of its item.

The photo is rectified into the reference's frame through the homography that
verifies it against the item (the same RootSIFT matching and robust fit as
identify), or, when that fails, through the detected cover outline. The crop is
then added to the index as another view of the item
(:meth:`cover_id.server.collection.Collection.add_view`, the write path of
``POST /api/refs``), so identify uses it from the next request on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from cover_id.identify.recipe import Identifier
    from cover_id.identify.result import Source
    from cover_id.index.store import IndexStore

MIN_INLIERS = 12  # fewer verified matches than this: the homography is not trusted for rectifying
VIEW_MAX_SIDE = 1024  # like references (index build's REF_MAX_SIDE)


@dataclass
class Rectified:
    """The photo's cover in an upright frame, and how it was found (``homography`` or ``outline``)."""

    image: "np.ndarray"
    how: str
    inliers: int = 0


def rectify_for(
    identifier: "Identifier", store: "IndexStore", source: "Source", row: int
) -> tuple[Rectified | None, str]:
    """The cover of ``row`` as seen in the photo, warped into the reference's frame (or None), and why.

    Verified against that one reference in the rectified cover and the whole photo; the view with the
    stronger evidence gives the homography (reference -> photo), which is inverted to lift the photo's
    pixels onto the reference's frame. Without a trustworthy homography (another edition, a worn cover)
    the detected outline is used, but only when the photo does not match another item of the collection:
    a mistaken label must not teach the index to confuse two items.
    """
    import cv2
    import numpy as np

    from cover_id.detectors.quad import rectify
    from cover_id.identify.verify import verify
    from cover_id.identify.views import make_views, photo_features

    image, _ = identifier.read(source)
    quads = identifier.detector.detect(image, max_quads=1)
    quad = quads[0] if quads else None
    full, views = make_views(image, photo_features(image), quad)
    per_view = verify(identifier.reranker, identifier._pool(), store, full, views, [row], None)
    best, view = None, None
    for v in views:
        ranked = per_view[v.name].ranked
        m = ranked[0] if ranked else None
        if m is not None and m.homography is not None and m.sane and (best is None or m.score > best.score):
            best, view = m, v
    if best is not None and view is not None and best.inliers >= MIN_INLIERS:
        w, h = store.features[row].size
        to_photo = view.to_photo @ best.homography  # reference pixels -> processed photo pixels
        scale = min(1.0, VIEW_MAX_SIDE / max(w, h))
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        lift = np.diag([scale, scale, 1.0]) @ np.linalg.inv(to_photo)
        crop = cv2.warpPerspective(image, lift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return Rectified(crop, "homography", int(best.inliers)), "verified against the item"
    item = store.item_keys([row])[0]
    seen = identifier.identify(image)
    if seen["decision"] in ("accept", "review") and seen["match"] and seen["match"]["id"] != item:
        return None, f"the photo matches another item ({seen['match']['id']})"
    if quad is None:
        return None, "the cover could not be found in the photo"
    return Rectified(rectify(image, quad.corners), "outline"), "the detected outline"
