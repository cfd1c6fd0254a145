"""Identify with the photo's RootSIFT split in two halves (on two threads) gives the answers of one piece (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cover_id.runtime import split_features
from tests.test_real_sets import small_index


def test_split_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVER_ID_SPLIT_FEATURES", raising=False)
    assert split_features()
    for off in ("0", "off", "false"):
        monkeypatch.setenv("COVER_ID_SPLIT_FEATURES", off)
        assert not split_features()


@pytest.mark.slow
def test_split_gives_the_same_answers_on_dev_photos(dvd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ident = small_index(tmp_path, dvd, range(1, 13))
    photos = [dvd / "photos" / f"e63_{n:03d}.jpg" for n in (1, 3, 10)]  # 3: near the low-contrast re-extraction
    answers = {}
    for switch in ("1", "0"):
        monkeypatch.setenv("COVER_ID_SPLIT_FEATURES", switch)
        answers[switch] = [ident.identify(p) for p in photos]
    for split, whole, photo in zip(answers["1"], answers["0"], photos):
        assert split["decision"] == whole["decision"] == "accept", photo.name
        assert split["match"]["id"] == whole["match"]["id"] == photo.stem[-3:]
        assert abs(split["geom_score"] - whole["geom_score"]) < 0.1
