"""Step: export. The rectified cover (--export-crop) and an annotated photo (--export-debug)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np

    from cover_id.identify.result import Photo
    from cover_id.index.store import IndexStore

CROP_SIDE = 640  # exported crops are at most this large
COLOURS = {"accept": (0, 200, 0), "review": (0, 190, 255), "reject": (0, 0, 230)}  # BGR
QUAD_COLOUR = (255, 160, 0)


def crop(store: "IndexStore", photo: "Photo", result: dict[str, Any] | None) -> "np.ndarray":
    """The verified outline warped upright at the reference's aspect, else the detected quad, else the photo.

    ``store`` is the snapshot the photo was identified against (the collection may change while serving).
    """
    import cv2
    import numpy as np

    from cover_id.detectors.quad import rectify
    from cover_id.identify.views import content_box

    image = photo.image
    assert image is not None
    if result and result.get("match_quad") and result["decision"] != "reject":
        src = np.array(result["match_quad"], np.float32) / np.float32(photo.back)
        ref = store.index_of(result["match"]["id"])
        x0, y0, x1, y1 = content_box(store.features[ref]) if ref is not None else (0, 0, CROP_SIDE, CROP_SIDE)
        w, h = x1 - x0, y1 - y0
        scale = min(1.0, CROP_SIDE / max(w, h))
        w, h = max(8, round(w * scale)), max(8, round(h * scale))
        dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        return cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR)
    return rectify(image, photo.quads[0].corners) if photo.quads else image


def debug_image(photo: "Photo", results: list[dict[str, Any]]) -> "np.ndarray":
    """The processed photo with the detected quads and the verified outlines drawn, and the decisions written."""
    import cv2
    import numpy as np

    assert photo.image is not None
    out = photo.image.copy()
    back = photo.back
    thick = max(2, round(max(out.shape[:2]) / 400))
    for r in results:
        colour = COLOURS[r["decision"]]
        if r.get("quad"):
            pts = (np.array(r["quad"]) / back).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, QUAD_COLOUR, thick, cv2.LINE_AA)
        if r.get("match_quad"):
            pts = (np.array(r["match_quad"]) / back).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, colour, thick, cv2.LINE_AA)
        if r.get("match"):
            anchor = (np.array((r.get("match_quad") or r.get("quad") or [[10, 30]])[0]) / back).astype(int)
            text = f"{r['decision']}: {r['match']['name']} ({r['geom_score']:.2f})"
            origin = (int(anchor[0]) + 4, max(20, int(anchor[1]) - 8))
            font, weight = cv2.FONT_HERSHEY_SIMPLEX, max(1, thick // 2)
            cv2.putText(out, text, origin, font, thick * 0.35, colour, weight, cv2.LINE_AA)
    return out


def write_image(path: Path, image: "np.ndarray") -> str:
    """Write ``image``; a clear error when it cannot be written. Returns the path as text."""
    import cv2

    if not cv2.imwrite(str(path), image):
        raise CoverIdError(f"cannot write {path}")
    return str(path)
