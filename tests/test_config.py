from pathlib import Path

import pytest

from cover_id.config import load_settings
from cover_id.errors import CoverIdError


def test_layers_in_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings()["top_k"] == 25
    Path("cover-id.yaml").write_text("top_k: 30\nport: 9000\nencoder: local\n")
    assert load_settings()["top_k"] == 30
    monkeypatch.setenv("COVER_ID_TOP_K", "40")
    s = load_settings()
    assert s["top_k"] == 40 and s["port"] == 9000 and s["encoder"] == "local"
    assert load_settings({"top_k": 50, "port": None})["top_k"] == 50
    assert load_settings({"top_k": 50, "port": None})["port"] == 9000


def test_explicit_config_file_wins_over_default_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cover-id.yaml").write_text("top_k: 30\n")
    other = tmp_path / "other.yaml"
    other.write_text("top_k: 5\n")
    assert load_settings(config_path=other)["top_k"] == 5


def test_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("top_k: [1,\n")
    with pytest.raises(CoverIdError, match="not valid YAML"):
        load_settings(config_path=bad)
    with pytest.raises(CoverIdError, match="not found"):
        load_settings(config_path=tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(CoverIdError, match="mapping"):
        load_settings(config_path=tmp_path / "list.yaml")
