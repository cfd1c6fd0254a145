"""A corpus of malformed, hostile and merely unusual image files, generated (deterministic, tiny).

Used by ``tests/test_fuzz.py`` and ``benchmarks/decode_memory.py``. Every case is
``Case(name, data, kind, expect)``: ``expect`` is ``"ok"`` (a valid image: it
must be answered), ``"error"`` (it must be refused with a clear message) or
``"either"`` (damaged data a decoder may or may not still read: it must be
answered or refused, never crash anything).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str  # file name (may hold surrogate escapes: bytes that are not UTF-8)
    data: bytes
    kind: str  # truncated, corrupted, random, magic, renamed, bomb, dims, exif, mode, name
    expect: str  # ok | error | either


def base_image(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    """A small textured RGB picture (gradients, blocks, noise): something for every decoder to chew on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x ^ y) * 8 % 256], axis=2).astype(np.int16)
    a += rng.integers(-20, 20, size=a.shape, dtype=np.int16)
    a[h // 4 : h // 2, w // 4 : w // 2] = (250, 30, 30)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _try(make: Callable[[], bytes]) -> bytes | None:
    """Encoders this Pillow build lacks (a codec, a mode) just leave their case out."""
    try:
        return make()
    except Exception:  # noqa: BLE001 - generation only
        return None


# ---- hand-made headers -------------------------------------------------------------------
def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png(
    width: int, height: int, idat: bytes, bit_depth: int = 8, colour: int = 0, extra: list[bytes] | None = None
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", ihdr), *(extra or []), _png_chunk(b"IDAT", idat), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def png_zero_bomb(width: int, height: int) -> bytes:
    """A real decompression bomb: a grey PNG of zeros, compressed row by row (a few hundred KB at most)."""
    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    return png(width, height, b"".join(parts))


def png_text_bomb(chunk: bytes = b"zTXt") -> bytes:
    """A 3 KB PNG whose compressed text decompresses past Pillow's text limit."""
    text = zlib.compress(b"\0" * (3 * 1024 * 1024), 9)
    body = b"Comment\0\0" + text if chunk == b"zTXt" else b"Comment\0\x01\x00\0\0" + text
    return png(16, 16, zlib.compress(b"\0" * (17 * 16)), extra=[_png_chunk(chunk, body)])


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size."""
    at = jpeg.find(b"\xff\xc0")
    if at < 0:
        raise ValueError("no SOF0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def tiff_declaring(width: int, height: int) -> bytes:
    """A minimal grey TIFF header that claims ``width`` x ``height`` and holds 8 bytes of pixels."""
    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 9 + 4),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 8),
    ]
    ifd = (
        struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, typ, 1, v) for t, typ, v in tags) + b"\0\0\0\0"
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x80" * 8


def bmp_declaring(width: int, height: int, bpp: int = 24) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 14 + 40) + header + b"\x7f" * 16


def webp_declaring(width: int, height: int) -> bytes:
    vp8x = (
        b"VP8X"
        + struct.pack("<I", 10)
        + b"\0\0\0\0"
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# ---- the corpus ----------------------------------------------------------------------------
def corpus(seed: int = 2024) -> list[Case]:
    """At least 500 cases, always the same ones for the same seed."""
    rng = np.random.default_rng(seed)
    img = base_image()
    out: list[Case] = []

    def add(name: str, data: bytes | None, kind: str, expect: str) -> None:
        if data is not None:
            out.append(Case(name, data, kind, expect))

    bases = {
        "jpg": encode(img, "JPEG", quality=90),
        "png": encode(img, "PNG"),
        "webp": encode(img, "WEBP", quality=80),
        "bmp": encode(img, "BMP"),
        "tif": encode(img, "TIFF", compression="tiff_lzw"),
    }
    heic = _try(lambda: _heic(img))
    if heic:
        bases["heic"] = heic

    # Truncations at many offsets, and bytes overwritten in the middle.
    for ext, data in bases.items():
        n = len(data)
        offsets = sorted(
            {1, 2, 3, 4, 6, 8, 11, 16, 24, 33, 50, 64, 100, 128, n // 2, n - 1, n - 2, n - 12}
            | {int(x) for x in np.linspace(5, n - 3, 24)}
        )
        for off in [o for o in offsets if 0 < o < n][:40]:
            add(f"trunc_{ext}_{off}.{ext}", data[:off], "truncated", "either")
        for i in range(10):
            b = bytearray(data)
            at = int(rng.integers(16, max(17, n - 1)))
            b[at : at + 8] = rng.integers(0, 256, size=len(b[at : at + 8]), dtype=np.uint8).tobytes()
            add(f"corrupt_{ext}_{i}.{ext}", bytes(b), "corrupted", "either")

    # Random bytes named like images, and random bytes behind each format's magic.
    exts = [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".JPG", ".PNG"]
    for i in range(50):
        size = int(rng.choice([1, 2, 3, 7, 16, 100, 1000, 5000]))
        add(
            f"random_{i}{exts[i % len(exts)]}",
            rng.integers(0, 256, size=size, dtype=np.uint8).tobytes(),
            "random",
            "error",
        )
    magics = {
        "jpg": b"\xff\xd8\xff\xe0",
        "png": b"\x89PNG\r\n\x1a\n",
        "webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
        "bmp": b"BM",
        "tif": b"II*\x00",
        "heic": b"\x00\x00\x00\x18ftypheic",
    }
    for ext, magic in magics.items():
        for i in range(10):
            size = int(rng.choice([0, 4, 20, 200, 2000]))
            add(
                f"magic_{ext}_{i}.{ext}",
                magic + rng.integers(0, 256, size=size, dtype=np.uint8).tobytes(),
                "magic",
                "error",
            )

    # Other formats, renamed as images.
    renamed = {
        "gif": encode(img, "GIF"),
        "ppm": encode(img, "PPM"),
        "pgm": encode(img.convert("L"), "PPM"),
        "ico": _try(lambda: encode(img, "ICO")),
        "tga": _try(lambda: encode(img, "TGA")),
        "pcx": _try(lambda: encode(img, "PCX")),
        "p6": b"P6\n",
        "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "zip": b"PK\x03\x04" + b"\0" * 40,
        "gz": zlib.compress(b"hello") and b"\x1f\x8b\x08\x00" + b"\0" * 20,
        "elf": b"\x7fELF\x02\x01\x01" + b"\0" * 60,
        "html": b"<!doctype html><html><body>not an image</body></html>",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        "json": b'{"image": "no"}',
        "text": "ceci n'est pas une image \u00e9".encode(),
        "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n",
        "utf16": "\ufeffhello".encode("utf-16"),
        "nul": b"\0" * 64,
        "ff": b"\xff" * 64,
        "xcf": b"gimp xcf file\0" + b"\0" * 30,
    }
    for i, (what, data) in enumerate(renamed.items()):
        add(f"renamed_{what}{exts[i % 5]}", data, "renamed", "error")

    # Bombs and absurd declared sizes (all tiny files).
    jpg = bases["jpg"]
    add("bomb_png_10950.png", png_zero_bomb(10950, 10950), "bomb", "error")  # 120 MP declared, 120 KB
    add("bomb_png_7000.png", png_zero_bomb(7000, 7000), "bomb", "either")  # 49 MP: within the decode budget
    add("bomb_png_ztxt.png", png_text_bomb(b"zTXt"), "bomb", "error")
    add("bomb_png_itxt.png", png_text_bomb(b"iTXt"), "bomb", "either")
    add("bomb_png_header_only.png", png(60000, 60000, zlib.compress(b"\0" * 100)), "bomb", "error")
    add(
        "bomb_png_16bit_rgba.png",
        png(20000, 20000, zlib.compress(b"\0" * 100), bit_depth=16, colour=6),
        "bomb",
        "error",
    )
    add("bomb_jpeg_65000.jpg", jpeg_declaring(jpg, 65000, 65000), "bomb", "error")
    add("bomb_jpeg_119mp.jpg", jpeg_declaring(jpg, 11000, 10900), "bomb", "either")
    add("bomb_jpeg_1x65000.jpg", jpeg_declaring(jpg, 1, 65000), "bomb", "either")
    add("bomb_tiff_huge.tif", tiff_declaring(100000, 100000), "bomb", "error")
    add("bomb_tiff_wide.tif", tiff_declaring(4_000_000, 1), "bomb", "either")
    add("bomb_bmp_huge.bmp", bmp_declaring(30000, 30000), "bomb", "error")
    add("bomb_bmp_negative.bmp", bmp_declaring(-5, 2**31 - 1), "bomb", "error")
    add("bomb_webp_max.webp", webp_declaring(16384, 16384), "bomb", "error")

    # Valid images with odd dimensions.
    for w, h in [
        (1, 1),
        (2, 2),
        (3, 5),
        (1, 800),
        (800, 1),
        (3, 4000),
        (4000, 3),
        (16, 16),
        (17, 13),
        (9000, 2),
        (2, 9000),
    ]:
        add(f"dims_{w}x{h}.png", encode(base_image(w, h), "PNG", optimize=True), "dims", "either")
    for w, h in [(1, 1), (8, 8), (10000, 10), (10, 10000)]:
        add(f"dims_{w}x{h}.jpg", encode(base_image(w, h), "JPEG", quality=80), "dims", "either")

    # Every EXIF orientation, values that mean nothing, and damaged EXIF blocks.
    for o in range(1, 9):
        add(f"exif_orientation_{o}.jpg", encode(img, "JPEG", exif=_exif(o)), "exif", "ok")
        add(f"exif_orientation_{o}.png", _try(lambda o=o: encode(img, "PNG", exif=_exif(o))), "exif", "ok")
    for o in (0, 9, 255, 65535):
        add(f"exif_orientation_bad_{o}.jpg", encode(img, "JPEG", exif=_exif(o)), "exif", "ok")
    for i in range(6):
        blob = (
            b"Exif\0\0"
            + (b"II*\x00" if i % 2 else b"MM\x00*")
            + rng.integers(0, 256, size=40 + 30 * i, dtype=np.uint8).tobytes()
        )
        add(f"exif_damaged_{i}.jpg", encode(img, "JPEG", exif=blob), "exif", "ok")
    add("exif_orientation_6.webp", _try(lambda: encode(img, "WEBP", exif=_exif(6))), "exif", "ok")
    add("exif_orientation_8.tif", _try(lambda: encode(img, "TIFF", exif=_exif(8))), "exif", "ok")

    # Odd modes, bit depths, compressions and multi-frame files.
    for name, data in _modes(img).items():
        add(name, data, "mode", "ok")

    # Odd names (valid JPEG content): what users and other programs name files.
    names = [
        "café.jpg",
        "封面 表紙.jpg",
        "\U0001f4c0 disc.jpg",
        "\u202eexe.jpg",
        "e\u0301te\u0301.jpg",
        " lead.jpg",
        "trail .jpg",
        "-dash.jpg",
        "--double-dash.jpg",
        "quote'\"s.jpg",
        "new\nline.jpg",
        "tab\tx.jpg",
        "[bold red]x.jpg",
        "%s%n%x.jpg",
        "semi;colon&amp.jpg",
        "back\\slash.jpg",
        "UPPER.JPG",
        "no_extension",
        "double.png.jpg",
        "jpeg_named.png",
        "x" * 200 + ".jpg",
        "{curly} $(dollar).jpg",
        "*star?.jpg",
        "#hash.jpg",
        "nul\u0001ctl.jpg",
    ]
    if os.name == "posix":
        names += [os.fsdecode(b"caf\xe9.jpg"), os.fsdecode(b"\xff\xfe bytes.jpg")]
    for name in names:
        add(name, encode(base_image(seed=len(name)), "JPEG", quality=85), "name", "ok")
    return out


def _heic(img: Image.Image) -> bytes:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    return encode(img, "HEIF", quality=80)


def _modes(img: Image.Image) -> dict[str, bytes]:
    """Valid files in every colour mode and layout the readers meet."""
    import cv2

    g = np.asarray(img.convert("L"), dtype=np.float32)
    made: dict[str, bytes | None] = {
        "mode_1.png": _try(lambda: encode(img.convert("1"), "PNG")),
        "mode_L.png": encode(img.convert("L"), "PNG"),
        "mode_LA.png": encode(img.convert("LA"), "PNG"),
        "mode_P.png": encode(img.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "mode_P_transparent.png": _try(
            lambda: encode(img.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0)
        ),
        "mode_RGBA.png": encode(img.convert("RGBA"), "PNG"),
        "mode_RGBA_clear.png": encode(Image.new("RGBA", (40, 30), (0, 0, 0, 0)), "PNG"),
        "mode_I16.png": encode(Image.fromarray((g * 257).astype(np.uint16)), "PNG"),
        "mode_RGB48.png": cv2.imencode(".png", (np.asarray(img)[:, :, ::-1].astype(np.uint16) * 257))[1].tobytes(),
        "mode_RGBA64.png": cv2.imencode(
            ".png", np.dstack([np.asarray(img).astype(np.uint16) * 257, np.full(g.shape, 40000, np.uint16)])
        )[1].tobytes(),
        "mode_interlaced.png": _try(lambda: cv2.imencode(".png", np.asarray(img))[1].tobytes()),
        "mode_apng.png": _try(lambda: encode(img, "PNG", save_all=True, append_images=[img.rotate(90)])),
        "mode_F_nan.tif": encode(Image.fromarray(np.where(g > 128, np.nan, g).astype(np.float32)), "TIFF"),
        "mode_F_inf.tif": encode(Image.fromarray(np.where(g > 200, np.inf, -g).astype(np.float32)), "TIFF"),
        "mode_F_all_nan.tif": encode(Image.fromarray(np.full((20, 30), np.nan, np.float32)), "TIFF"),
        "mode_F_unit.tif": encode(Image.fromarray((g / 255).astype(np.float32)), "TIFF"),
        "mode_I32.tif": encode(Image.fromarray((g.astype(np.int32) - 100) * 1000), "TIFF"),
        "mode_I16.tif": encode(Image.fromarray((g * 257).astype(np.uint16)), "TIFF"),
        "mode_CMYK.tif": encode(img.convert("CMYK"), "TIFF"),
        "mode_LAB.tif": _try(lambda: encode(img.convert("LAB"), "TIFF")),
        "mode_YCbCr.tif": _try(lambda: encode(img, "TIFF", compression="jpeg")),
        "mode_1_g4.tif": _try(lambda: encode(img.convert("1"), "TIFF", compression="group4")),
        "mode_deflate.tif": _try(lambda: encode(img, "TIFF", compression="tiff_adobe_deflate")),
        "mode_packbits.tif": _try(lambda: encode(img, "TIFF", compression="packbits")),
        "mode_multipage.tif": _try(lambda: encode(img, "TIFF", save_all=True, append_images=[img.convert("L")])),
        "mode_L.jpg": encode(img.convert("L"), "JPEG"),
        "mode_CMYK.jpg": encode(img.convert("CMYK"), "JPEG"),
        "mode_progressive.jpg": encode(img, "JPEG", progressive=True),
        "mode_444.jpg": encode(img, "JPEG", subsampling=0),
        "mode_q1.jpg": encode(img, "JPEG", quality=1),
        "mode_1.bmp": encode(img.convert("1"), "BMP"),
        "mode_P.bmp": encode(img.convert("P"), "BMP"),
        "mode_L.bmp": encode(img.convert("L"), "BMP"),
        "mode_RGBA.bmp": _try(lambda: encode(img.convert("RGBA"), "BMP")),
        "mode_lossless_RGBA.webp": _try(lambda: encode(img.convert("RGBA"), "WEBP", lossless=True)),
        "mode_animated.webp": _try(lambda: encode(img, "WEBP", save_all=True, append_images=[img.rotate(90)])),
        "mode_L.webp": _try(lambda: encode(img.convert("L"), "WEBP")),
    }
    return {k: v for k, v in made.items() if v is not None}
