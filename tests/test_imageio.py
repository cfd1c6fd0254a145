import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cover_id.errors import ImageError
from cover_id.imageio import image_size, read_image, read_sized


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red (RGB)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    p = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = read_image(p)
    assert out.shape == (40, 20, 3)
    assert image_size(p) == (20, 40)
    assert out[5, 10, 2] > 200 and out[-5, 10, 2] < 60  # red now on top (BGR: channel 2)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "CMYK"])
def test_modes_become_bgr_uint8(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray((np.random.default_rng(0).random((16, 24, 3)) * 255).astype(np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.arange(16 * 24).reshape(16, 24) * 100).astype(np.uint16))
        p = _save(img, tmp_path / "a.png")
    else:
        p = _save(base.convert(mode), tmp_path / ("a.tif" if mode == "CMYK" else "a.png"))
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (16, 24, 3)
    if mode == "I;16":
        assert out.max() > 100  # scaled, not clipped to white or black


def test_rgba_transparency_flattens_to_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    out = read_image(_save(img, tmp_path / "t.png"))
    assert out.min() == 255


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_formats_and_bytes(tmp_path: Path, fmt: str) -> None:
    img = Image.fromarray((np.random.default_rng(1).random((30, 50, 3)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    assert read_image(buf.getvalue()).shape == (30, 50, 3)


def test_reduced_decoding_bounds_size(tmp_path: Path) -> None:
    img = Image.fromarray((np.random.default_rng(2).random((1200, 1600, 3)) * 255).astype(np.uint8))
    p = _save(img, tmp_path / "big.jpg")
    out = read_image(p, max_side=500)
    assert max(out.shape[:2]) == 500 and out.shape[1] > out.shape[0]


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, not an image")
    good = io.BytesIO()
    Image.new("RGB", (200, 200), (10, 20, 30)).save(good, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(good.getvalue()[:300])
    cases = {
        tmp_path / "missing.jpg": "no such file",
        tmp_path / "empty.jpg": "empty file",
        tmp_path / "text.jpg": "not an image",
        tmp_path / "trunc.jpg": "truncated or corrupt",
        tmp_path: "folder",
    }
    for path, msg in cases.items():
        with pytest.raises(ImageError, match=msg) as info:
            read_image(path)
        assert "\n" not in str(info.value)
    with pytest.raises(ImageError, match="empty"):
        read_image(b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    p = _save(Image.new("L", (12000, 12000)), tmp_path / "bomb.png", optimize=True)
    with pytest.raises(ImageError, match="too large"):
        read_image(p)
    with pytest.raises(ImageError, match="too large"):
        read_image(p, max_pixels=10_000_000)


def test_heic_photos_are_read(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif not installed")
    pillow_heif.register_heif_opener()
    img = Image.fromarray((np.random.default_rng(3).random((40, 60, 3)) * 255).astype(np.uint8))
    p = _save(img, tmp_path / "phone.heic")
    assert read_image(p).shape == (40, 60, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_upright_picture(fmt: str, orientation: int) -> None:
    from PIL import ImageOps

    img = Image.fromarray((np.random.default_rng(4).random((6, 10, 3)) * 255).astype(np.uint8)).resize((40, 24))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(
        buf,
        format=fmt,
        exif=exif,
        **({"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}),
    )
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))[:, :, ::-1]
    out = read_image(buf.getvalue())
    assert out.shape == upright.shape and image_size(buf.getvalue()) == (out.shape[1], out.shape[0])
    assert np.abs(out.astype(int) - upright).max() <= (0 if fmt != "JPEG" else 2)
    small, size = read_sized(buf.getvalue(), max_side=20)  # one opening gives both: the reduced picture, the full size
    assert size == image_size(buf.getvalue()) and np.array_equal(small, read_image(buf.getvalue(), max_side=20))
    assert max(small.shape[:2]) == 20 and (small.shape[1] > small.shape[0]) == (size[0] > size[1])


def test_the_content_decides_the_format_not_the_name(tmp_path: Path) -> None:
    img = Image.fromarray((np.random.default_rng(5).random((20, 30, 3)) * 255).astype(np.uint8))
    png = _save(img, tmp_path / "really_a_png.jpg", format="PNG")
    assert read_image(png).shape == (20, 30, 3)
    for data, what in [(b"P6\n", "P6"), (b"GIF89a" + b"\0" * 40, "gif"), (b"%PDF-1.4\n", "pdf")]:
        (tmp_path / f"{what}.jpg").write_bytes(data)
        with pytest.raises(ImageError, match="not an image or an unsupported format"):
            read_image(tmp_path / f"{what}.jpg")


def test_hostile_files_are_refused_with_a_reason_and_no_class_name() -> None:
    from tests.fuzz_cases import jpeg_declaring, png_text_bomb, png_zero_bomb

    jpg = io.BytesIO()
    Image.new("RGB", (16, 16)).save(jpg, format="JPEG")
    cases = {
        png_text_bomb(): "text metadata too large",
        png_zero_bomb(10950, 10950): "too large to decode",  # the 120 KB PNG: refused before decoding
        jpeg_declaring(jpg.getvalue(), 65000, 65000): "too large",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 30: "truncated or corrupt PNG",
    }
    for data, msg in cases.items():
        with pytest.raises(ImageError, match=msg) as info:
            read_image(data, max_side=800)
        text = str(info.value)
        assert text.startswith("uploaded image: ") and "\n" not in text
        assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b|<|/", text.split(": ", 1)[1]), text


def test_huge_jpeg_is_decoded_at_reduced_scale_within_the_budget() -> None:
    """A JPEG over the decode budget is read at 1/2, 1/4 or 1/8 scale instead of refused."""
    img = Image.fromarray((np.random.default_rng(6).random((30, 40, 3)) * 255).astype(np.uint8)).resize((4000, 3000))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=70)
    out = read_image(buf.getvalue(), decode_bytes=8 * 1_000_000)  # 1 MP at 8 bytes a pixel: 1/4 scale
    assert out.shape == (750, 1000, 3)
    with pytest.raises(ImageError, match="too large to decode"):
        read_image(_png_bytes(img), decode_bytes=8 * 1_000_000)  # a PNG cannot be decoded smaller


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_float_tiff_with_nan_and_inf_reads_without_warnings(tmp_path: Path) -> None:
    import warnings

    a = np.linspace(0, 1, 24 * 16, dtype=np.float32).reshape(16, 24)
    a[0, :5] = np.nan
    a[1, :5] = np.inf
    p = _save(Image.fromarray(a), tmp_path / "f.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(p)
    assert out.dtype == np.uint8 and out[-1, -1, 0] == 255 and out[0, 0, 0] == 0


def test_pipes_folders_and_broken_links_are_refused_without_blocking(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    for name, msg in [("pipe.jpg", "not a regular file"), ("link.jpg", "broken link")]:
        with pytest.raises(ImageError, match=msg):
            read_image(tmp_path / name)


def test_parallel_reads_share_the_memory_budget_and_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from cover_id import imageio

    data = [
        _png_bytes(Image.fromarray((np.random.default_rng(i).random((300, 400, 3)) * 255).astype(np.uint8)))
        for i in range(4)
    ]
    alone = [read_image(d, max_side=200) for d in data]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda d: read_image(d, max_side=200), data * 4))
    assert all(np.array_equal(a, b) for a, b in zip(alone * 4, together))
    assert imageio._budget.used == 0
