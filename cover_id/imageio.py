"""Reading images the way a phone user produces them.

Every image in cover-id is read here: EXIF orientation is honoured, JPEGs are
decoded at reduced resolution when a bounded size is asked for, grayscale /
RGBA / 16-bit inputs are brought to 8-bit BGR, and every failure becomes an
:class:`ImageError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Union

from cover_id.errors import ImageError

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif")
MAX_PIXELS = 120_000_000  # larger than any phone photo, small enough to refuse decompression bombs

Source = Union[str, Path, bytes]

_heif_registered: bool | None = None


def _register_heif() -> None:
    """Let Pillow read HEIC/HEIF when pillow-heif is installed."""
    global _heif_registered
    if _heif_registered is None:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_registered = True
        except Exception:  # optional reader: absence only means HEIC is unsupported
            _heif_registered = False


def _describe(source: Source) -> str:
    return "uploaded image" if isinstance(source, (bytes, bytearray)) else str(source)


def _open(source: Source):
    """Open lazily with Pillow, turning every failure into ImageError."""
    from PIL import Image, UnidentifiedImageError

    _register_heif()
    name = _describe(source)
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
        fp: object = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
        fp = path
    try:
        with _no_bomb_check():
            return Image.open(fp)  # type: ignore[arg-type]
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image or an unsupported format") from None
    except OSError as exc:
        raise ImageError(f"{name}: truncated or corrupt ({exc})") from None


class _no_bomb_check:
    """Pillow's own bomb check warns or raises inconsistently; we check size ourselves."""

    def __enter__(self) -> None:
        from PIL import Image

        self._saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(self, *exc: object) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self._saved


def image_size(source: Source) -> tuple[int, int]:
    """(width, height) from the header, after EXIF orientation; no pixel decoding."""
    img = _open(source)
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_image(
    source: Source, max_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> "np.ndarray":
    """Decode to a contiguous uint8 BGR array (H, W, 3).

    ``max_side`` bounds the longer side; JPEGs are then decoded at reduced
    resolution (DCT scaling), which is several times faster for 12 MP photos.
    Raises :class:`ImageError` for anything that is not a readable image.
    """
    import numpy as np
    from PIL import Image, ImageOps

    name = _describe(source)
    img = _open(source)
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: image has no pixels")
    if w * h > max_pixels:
        raise ImageError(
            f"{name}: too large ({w}x{h} = {w * h / 1e6:.0f} MP, limit {max_pixels / 1e6:.0f} MP)"
        )
    try:
        if max_side and img.format == "JPEG" and max(w, h) > max_side:
            scale = max_side / max(w, h)
            img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        img = ImageOps.exif_transpose(img)
        arr = _to_rgb8(img)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: truncated or corrupt ({exc})") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - guarded above
        raise ImageError(f"{name}: {exc}") from None
    if max_side and max(arr.shape[:2]) > max_side:
        import cv2

        scale = max_side / max(arr.shape[:2])
        size = (max(1, round(arr.shape[1] * scale)), max(1, round(arr.shape[0] * scale)))
        arr = cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr[:, :, ::-1])


def _to_rgb8(img) -> "np.ndarray":
    """Any Pillow mode to uint8 RGB; transparency is flattened onto white."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Content hash used to detect changed and duplicate files."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
