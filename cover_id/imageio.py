"""Reading images the way a phone user produces them, and refusing everything else.

Every image in cover-id is read here. The format is decided by the file's
first bytes (never by its name), and only the decoder for that format is
tried. Decoding is bounded before any pixel is allocated: the declared size is
checked, JPEGs are decoded at reduced resolution (DCT scaling) when a bounded
size is asked for, other formats are refused beyond a pixel budget, and large
decodes running in parallel threads share one memory budget. EXIF orientation
is honoured; grayscale / RGBA / 16-bit / float inputs are brought to 8-bit BGR.
Every failure is an :class:`ImageError` with a one-line reason that names the
file (or "uploaded image") and never an exception class.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cover_id.errors import ImageError

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif")
FORMATS_TEXT = "JPEG, PNG, WebP, BMP, TIFF or HEIC"
MAX_PIXELS = 120_000_000  # declared size: larger than any phone photo, small enough to refuse bombs
# Memory one decode may use, from its decoded size and the bytes per pixel its format costs
# (measured peaks, rounded up: the decoder's buffers, Pillow's image, the arrays made on the
# way to BGR). 400 MB reads a 50 MP PNG, TIFF or HEIC and a 25 MP WebP; JPEGs are decoded at
# 1/2, 1/4 or 1/8 scale to fit, so any JPEG up to MAX_PIXELS is read.
DECODE_BYTES = 400 * 1024 * 1024
BYTES_PER_PIXEL = {"JPEG": 8, "PNG": 8, "TIFF": 8, "BMP": 8, "HEIF": 8, "WEBP": 16}
# Decodes running at the same time (server worker threads) share this much; a decode that
# would exceed it waits for the others (one alone always runs).
DECODE_MEMORY = 640 * 1024 * 1024

Source = str | Path | bytes

# Pillow warns about what it tolerates in damaged files (corrupt EXIF, odd TIFF tags, large
# sizes). Every image is checked here and refused with an ImageError when it matters, so the
# warnings are noise on a user's terminal: ignored once, for Pillow's modules only (a filter
# that is never switched back and forth, so threads see the same setting).
warnings.filterwarnings("ignore", module=r"PIL(\.|$)")

_heif_registered: bool | None = None
_decoders_ready = False


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


def _load_decoders() -> None:
    """Register the Pillow decoders of the formats we read (and only those)."""
    global _decoders_ready
    if not _decoders_ready:
        from PIL import BmpImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401

        _register_heif()
        _decoders_ready = True


# ---- format detection --------------------------------------------------------------
_HEIF_BRANDS = {
    b"heic",
    b"heix",
    b"heim",
    b"heis",
    b"hevc",
    b"hevx",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",
}


def sniff_format(head: bytes) -> str | None:
    """The image format from a file's first 16 bytes: JPEG, PNG, WEBP, BMP, TIFF, HEIF or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIF"
    return None


def _pillow_formats(kind: str) -> list[str]:
    from PIL import Image

    if kind == "HEIF":
        return [f for f in ("HEIF", "AVIF") if f in Image.OPEN]
    return [kind]


# ---- names and reasons ---------------------------------------------------------------
def display_name(path: str | Path) -> str:
    """A file name that can always be printed: bytes that are not UTF-8 become ``\\xNN``."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_valid_name(path: str | Path) -> bool:
    """False when a file name holds bytes that are not UTF-8 (it cannot be stored in JSON)."""
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _describe(source: Source) -> str:
    return "uploaded image" if isinstance(source, (bytes, bytearray)) else display_name(source)


_NOISE = re.compile(r"<[^>]*>|(?<![\w.])/\S+|[A-Za-z_]\w*(Plugin|Error|Exception)\b\.?\w*")


def _reason(exc: BaseException) -> str:
    """The decoder's message, shortened to one line, without object reprs, paths or class names."""
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    if "MAX_TEXT" in text:
        return "text metadata too large: a decompression bomb"
    text = " ".join(_NOISE.sub("", text).split()).strip(" :,.'\"")
    return text[:120] or "the image data is damaged"


# ---- opening -------------------------------------------------------------------------
def _check_file(path: Path, name: str) -> None:
    """A readable, non-empty regular file (a FIFO would block the reader forever)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file" + (" (broken link)" if path.is_symlink() else "")) from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be read ({exc.strerror or 'unreadable'})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name}: is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{name}: not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")


@contextmanager
def _opened(source: Source) -> Iterator[tuple[Any, str]]:
    """The image, opened lazily (header only) by the one decoder its content calls for, and its format.

    Pillow's ``Image.open`` is not used: it tries every decoder whatever the
    content, and checks sizes against a process-wide setting. Here the caller
    checks the declared size against its own limits before decoding anything.
    """
    from PIL import Image

    _load_decoders()
    name = _describe(source)
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
        fp: Any = io.BytesIO(source)
    else:
        _check_file(Path(source), name)
        try:
            fp = open(source, "rb")
        except OSError as exc:
            raise ImageError(f"{name}: cannot be read ({exc.strerror or 'unreadable'})") from None
    with fp:
        try:
            head = fp.read(16)
        except OSError as exc:
            raise ImageError(f"{name}: cannot be read ({exc.strerror or 'unreadable'})") from None
        kind = sniff_format(head)
        if kind is None:
            raise ImageError(f"{name}: not an image or an unsupported format (expected {FORMATS_TEXT})")
        img = None
        for fmt in _pillow_formats(kind):
            factory, accept = Image.OPEN[fmt]
            if accept and not accept(head):
                continue
            fp.seek(0)
            try:
                img = factory(fp, "")
            except Image.DecompressionBombError:  # WebP checks its size while opening
                raise ImageError(f"{name}: too large (declared size over {MAX_PIXELS / 1e6:.0f} MP)") from None
            except MemoryError:
                raise ImageError(f"{name}: too large to decode") from None
            except Exception as exc:  # noqa: BLE001 - decoders raise many types; each is a bad file
                raise ImageError(f"{name}: truncated or corrupt {kind} image ({_reason(exc)})") from None
            break
        if img is None:
            need = " (HEIC/HEIF needs the pillow-heif package)" if kind == "HEIF" else ""
            raise ImageError(f"{name}: not an image or an unsupported format{need}")
        try:
            yield img, kind
        finally:
            img.close()


def _orientation(img: Any, kind: str) -> int:
    """EXIF orientation 1-8 still to apply, from the header; a damaged EXIF block only means 'upright'.

    ``Image.getexif`` of the base class: the PNG reader's own would decode the
    whole image first, to look for an EXIF chunk after the pixels. Pillow's TIFF
    reader applies the orientation itself (its size is already the upright one).
    """
    from PIL import Image

    if kind == "TIFF":
        return 1
    try:
        value = int(Image.Image.getexif(img).get(0x0112, 1))
    except Exception:  # noqa: BLE001 - EXIF is optional metadata
        return 1
    return value if 1 <= value <= 8 else 1


def image_size(source: Source) -> tuple[int, int]:
    """(width, height) from the header, after EXIF orientation; no pixel decoding."""
    with _opened(source) as (img, kind):
        w, h = img.size
        return (h, w) if _orientation(img, kind) in (5, 6, 7, 8) else (w, h)


# ---- decoding --------------------------------------------------------------------------
class _MemoryBudget:
    """Bytes held by decodes in flight; a decode waits while others would exceed the budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.limit)
            self.used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


_budget = _MemoryBudget(DECODE_MEMORY)


_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def read_image(
    source: Source,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
    decode_bytes: int = DECODE_BYTES,
) -> "np.ndarray":
    """Decode to a contiguous uint8 BGR array (H, W, 3).

    ``max_side`` bounds the longer side; JPEGs are then decoded at reduced
    resolution (DCT scaling), which is several times faster for 12 MP photos.
    ``max_pixels`` bounds the declared size, ``decode_bytes`` the memory the
    decoding may take (a JPEG is decoded at 1/2, 1/4 or 1/8 scale to fit it;
    other formats over it are refused before any pixel is decoded).
    Raises :class:`ImageError` for anything that is not a readable image.
    """
    return read_sized(source, max_side, max_pixels, decode_bytes)[0]


def read_sized(
    source: Source,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
    decode_bytes: int = DECODE_BYTES,
) -> "tuple[np.ndarray, tuple[int, int]]":
    """:func:`read_image`, and the photo's full (width, height) after EXIF orientation, from one opening."""
    import numpy as np

    name = _describe(source)
    with _opened(source) as (img, kind):
        w, h = img.size
        size = (h, w) if _orientation(img, kind) in (5, 6, 7, 8) else (w, h)
        try:
            arr = _decode(img, kind, name, max_side, max_pixels, decode_bytes)
        except ImageError:
            raise
        except MemoryError:
            raise ImageError(f"{name}: too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; each is a bad file
            raise ImageError(f"{name}: truncated or corrupt {kind} image ({_reason(exc)})") from None
    from cover_id.imageops import shrink

    return np.ascontiguousarray(shrink(arr, max_side)[:, :, ::-1]), size


def _decode(img: Any, kind: str, name: str, max_side: int | None, max_pixels: int, decode_bytes: int) -> "np.ndarray":
    """Check the declared size, pick the decoded size, decode within the memory budget, orient, convert."""
    from PIL import Image

    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: image has no pixels")
    if w * h > max_pixels:
        raise ImageError(f"{name}: too large ({w}x{h} = {w * h / 1e6:.0f} MP, limit {max_pixels / 1e6:.0f} MP)")
    orientation = _orientation(img, kind)
    per_pixel = BYTES_PER_PIXEL[kind]
    decode_pixels = decode_bytes // per_pixel
    if kind == "JPEG":
        draft = _jpeg_draft_size(w, h, max_side, decode_pixels)
        if draft is not None:
            img.draft("RGB", draft)
    dw, dh = img.size
    if dw * dh > decode_pixels:
        raise ImageError(
            f"{name}: too large to decode ({w}x{h} = {w * h / 1e6:.0f} MP; {kind} images are read up to "
            f"{decode_pixels / 1e6:.0f} MP, JPEG photos up to {max_pixels / 1e6:.0f} MP)"
        )
    with _budget.hold(dw * dh * per_pixel):
        img.load()
        img = _reduce(img, max_side)
        if orientation != 1:
            img = img.transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))
        return _to_rgb8(img)


def _jpeg_draft_size(w: int, h: int, max_side: int | None, decode_pixels: int) -> tuple[int, int] | None:
    """The size to ask JPEG DCT scaling for (it decodes at 1/1, 1/2, 1/4 or 1/8, never below the size asked).

    The size bounded by ``max_side`` when that fits ``decode_pixels``; otherwise the
    scale that does (a 120 MP photo is decoded at 1/2 or smaller, whatever was asked).
    """
    size, factor = None, 1
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        q = min(w // size[0], h // size[1])  # how Pillow picks the scale
        factor = 8 if q >= 8 else 4 if q >= 4 else 2 if q >= 2 else 1
    if (w // factor) * (h // factor) <= decode_pixels:
        return size
    while factor < 8 and (w // factor) * (h // factor) > decode_pixels:
        factor *= 2
    return (max(1, w // factor), max(1, h // factor))


def _reduce(img: Any, max_side: int | None) -> Any:
    """Shrink a decoded image far larger than asked for by an integer factor (box filter), in Pillow.

    Only images over twice ``max_side`` are reduced (never a JPEG decoded with DCT
    scaling), so the full-size arrays of the conversion to BGR are never made.
    """
    if not max_side or max(img.size) <= 2 * max_side:
        return img
    if img.mode in ("P", "PA"):
        keep_alpha = img.mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if keep_alpha else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    return img.reduce(max(img.size) // max_side)


def _to_rgb8(img: Any) -> "np.ndarray":
    """Any Pillow mode to uint8 RGB; transparency is flattened onto white."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        if mode == "F":
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)  # float TIFFs may hold NaN / inf
        peak = float(a.max()) if a.size else 0.0
        top = 65535.0 if mode.startswith("I;16") or peak > 255 else 1.0 if mode == "F" and peak <= 1.0 else 255.0
        a = np.clip(a * np.float32(255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode in ("La", "RGBa"):
        img = img.convert(mode.upper())
        mode = img.mode
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
