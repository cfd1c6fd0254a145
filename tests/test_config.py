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


def test_environment_values_are_parsed_by_the_fields_type(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COVER_ID_API_KEY", "0123")  # YAML would make this the number 83
    monkeypatch.setenv("COVER_ID_HOST", "yes")  # ... and this True
    monkeypatch.setenv("COVER_ID_SECOND_LOOK", "no")
    monkeypatch.setenv("COVER_ID_MAX_UPLOAD_MB", "2.5")
    monkeypatch.setenv("COVER_ID_CORS_ORIGINS", "http://a.example, http://b.example")
    s = load_settings()
    assert s["api_key"] == "0123" and s["host"] == "yes" and s["second_look"] is False
    assert s["max_upload_mb"] == 2.5 and s["cors_origins"] == ["http://a.example", "http://b.example"]
    monkeypatch.setenv("COVER_ID_TOP_K", "many")
    with pytest.raises(CoverIdError, match="COVER_ID_TOP_K: expected a whole number, got 'many'"):
        load_settings()


def test_empty_pretrained_is_an_error_not_random_weights(tmp_path: Path, monkeypatch) -> None:
    from cover_id.encoders import resolve_encoder_name

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COVER_ID_PRETRAINED", "")
    with pytest.raises(CoverIdError, match="COVER_ID_PRETRAINED is empty"):
        load_settings()
    monkeypatch.setenv("COVER_ID_PRETRAINED", "none")  # random weights are asked for by name
    assert load_settings()["pretrained"] == "none"
    name, notice = resolve_encoder_name("auto", "ViT-B-32", "none")
    assert name == "local" and "local" in (notice or "")  # auto never picks random weights
    assert resolve_encoder_name("clip", "ViT-B-32", "none") == ("clip", None)


def test_yaml_values_are_checked_and_unknown_keys_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("top_k: '30'\nsecond_look: off\napi_key: 123\n")
    s = load_settings(config_path=cfg)
    assert s["top_k"] == 30 and s["second_look"] is False and s["api_key"] == "123"
    cfg.write_text("top_k: [1]\n")
    with pytest.raises(CoverIdError, match="top_k in .*expected a whole number"):
        load_settings(config_path=cfg)
    cfg.write_text("topk: 3\n")
    with pytest.raises(CoverIdError, match="unknown setting topk"):
        load_settings(config_path=cfg)


def test_presets_sit_between_defaults_and_the_other_layers(tmp_path: Path, monkeypatch) -> None:
    from cover_id.config import DEFAULTS, PRESETS, Settings, identify_record, index_record, load_config

    monkeypatch.chdir(tmp_path)
    assert load_config().preset == "default" and load_config().top_k == DEFAULTS["top_k"]
    fast = load_config({"preset": "fast"})
    assert fast.top_k == PRESETS["fast"]["top_k"] and fast.second_look is False
    assert load_config({"preset": "fast", "top_k": 40}).top_k == 40  # a flag beats the preset
    Path("cover-id.yaml").write_text("preset: accurate\n")
    monkeypatch.setenv("COVER_ID_RERANK_K", "7")
    s = load_config()
    assert s.preset == "accurate" and s.top_k == 50 and s.rerank_k == 7
    with pytest.raises(CoverIdError, match="unknown preset 'quick'"):
        load_config({"preset": "quick"})
    assert identify_record(s)["preset"] == "accurate" and identify_record(s)["rerank_k"] == 7
    rec = index_record({"encoder": "local"})
    assert rec == {
        "preset": "default",
        "encoder": "local",
        "model": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
        "device": "cpu",
        "batch_size": 32,
        "vote_index": "auto",
    }
    assert Settings.from_mapping({"top_k": None, "api_key": None, "unknown": 1}).top_k == 25


def test_every_setting_the_code_reads_is_a_field() -> None:
    """detector, reranker and second_look_side used to be read without a default."""
    from cover_id.config import DEFAULTS

    for name in ("detector", "reranker", "second_look_side", "detect_side", "max_side", "rerank_k", "threads"):
        assert name in DEFAULTS
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in DEFAULTS:
        assert f"`{name}`" in readme, f"setting {name} is not documented in the README"
