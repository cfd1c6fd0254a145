import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cover_id.errors import ImageError
from cover_id.imageio import image_size, read_image


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
