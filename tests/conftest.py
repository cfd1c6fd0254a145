"""Shared fixtures: tiny generated covers and the real DVD data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
DVD = ROOT.parent / "shared" / "data" / "dvd-covers"


def write_covers(folder: Path, n: int, size: tuple[int, int] = (240, 320), start: int = 0) -> list[Path]:
    """``n`` distinct synthetic covers as JPEGs named cover_000.jpg, ..."""
    import cv2

    from cover_id.evaluate.synth import make_cover

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"cover_{i:03d}.jpg"
        cv2.imwrite(str(p), make_cover(i, size))
        paths.append(p)
    return paths


@pytest.fixture
def covers(tmp_path: Path) -> Path:
    """A folder of 6 synthetic covers."""
    folder = tmp_path / "refs"
    write_covers(folder, 6)
    return folder


@pytest.fixture(scope="session")
def dvd() -> Path:
    if not (DVD / "references").is_dir():
        pytest.skip(f"real data not found at {DVD}")
    return DVD
