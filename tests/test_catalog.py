import json
import os
from pathlib import Path

import pytest

from cover_id.errors import CoverIdError
from cover_id.index.catalog import load_metadata, parse_label, scan_folder, slug_id


@pytest.mark.parametrize(
    "stem, expected",
    [
        ("LOCH-JP001_dark_magician", {"name": "Dark Magician", "set_code": "LOCH-JP001"}),
        ("dark_magician_pscr", {"name": "Dark Magician", "rarity": "PScR"}),
        ("LOCH-JP001_dark_magician_ur", {"name": "Dark Magician", "set_code": "LOCH-JP001", "rarity": "UR"}),
        ("10_things_i_hate_about_you", {"name": "10 Things I Hate About You"}),
        ("NYPd_blue", {"name": "NYPd Blue"}),
        ("spider-man_2", {"name": "Spider-man 2"}),
    ],
)
def test_parse_label(stem: str, expected: dict) -> None:
    assert parse_label(stem) == expected


def test_slug_ids_are_stable_and_url_safe() -> None:
    assert slug_id("sub/Dark Magician.jpg") == "sub--dark-magician"
    assert slug_id("001.jpg") == "001"


def test_scan_folder_recursive_sorted_posix(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ["z.jpg", "b/c/LOCH-JP001_dark_magician.PNG", "a.webp", "notes.txt", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    refs = scan_folder(tmp_path)
    assert [r.filename for r in refs] == ["a.webp", "b/c/LOCH-JP001_dark_magician.PNG", "z.jpg"]
    assert refs[1].name == "Dark Magician" and refs[1].fields == {"set_code": "LOCH-JP001"}
    assert refs[1].id == "b--c--loch-jp001-dark-magician"


def test_same_stem_different_extension_gets_distinct_ids(tmp_path: Path) -> None:
    for name in ["a.jpg", "a.png"]:
        (tmp_path / name).write_bytes(b"x")
    ids = [r.id for r in scan_folder(tmp_path)]
    assert len(set(ids)) == 2


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CoverIdError, match="not found"):
        scan_folder(tmp_path / "nope")


def test_metadata_catalog_keeps_fields_and_resolves_paths(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"x")
    elsewhere = tmp_path / "covers_root"
    (elsewhere / "deep").mkdir(parents=True)
    (elsewhere / "deep" / "b.jpg").write_bytes(b"x")
    lines = [
        {
            "id": 7,
            "name": "Abbey Road",
            "cover_id": "c7",
            "cover_url": "http://x/7.jpg",
            "local_filename": "img/a.jpg",
            "artist": "The Beatles",
            "year": 1969,
        },
        {"id": "b", "name": "B", "local_filename": str(elsewhere / "deep" / "b.jpg")},
        "not json",
        {"id": "c", "name": "C"},
    ]
    cat = tmp_path / "metadata.jsonl"
    cat.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    refs, skipped, root = load_metadata(cat)
    assert [r.id for r in refs] == ["7", "b"]
    rec = refs[0].record()
    assert rec["name"] == "Abbey Road" and rec["artist"] == "The Beatles" and rec["year"] == 1969
    assert rec["filename"] == "img/a.jpg" and rec["cover_url"] == "http://x/7.jpg"
    assert [s.reason.split(" (")[0] for s in skipped] == ["not valid JSON", "no local_filename"]
    # COVERS_ROOT: relative names resolve against it
    monkeypatch.setenv("COVERS_ROOT", str(elsewhere))
    cat.write_text(json.dumps({"id": "x", "name": "X", "local_filename": "deep/b.jpg"}) + "\n")
    refs, _, root = load_metadata(cat)
    assert refs[0].path == elsewhere / "deep" / "b.jpg" and refs[0].filename == "deep/b.jpg"


def test_walk_lists_what_it_cannot_use_with_a_reason(tmp_path: Path) -> None:
    import os

    from cover_id.index.catalog import scan_folder_report

    (tmp_path / "sub").mkdir()
    for name in ["a.jpg", "sub/b.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "broken.jpg")
    os.symlink("self.jpg", tmp_path / "self.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"x")
    refs, skipped = scan_folder_report(tmp_path)
    assert [r.filename for r in refs] == ["a.jpg", "sub/b.png"]
    reasons = {s.filename: s.reason for s in skipped}
    assert reasons == {
        "broken.jpg": "broken link (its target does not exist)",
        "self.jpg": "symbolic link loop",
        "pipe.jpg": "not a regular file (a pipe, socket or device)",
        "sub/loop": "link to a folder already scanned (a link loop?)",
        "caf\\xe9.jpg": "file name is not valid UTF-8 (rename it)",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_listed(tmp_path: Path) -> None:
    from cover_id.index.catalog import scan_folder_report

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.jpg").write_bytes(b"x")
    (tmp_path / "locked").chmod(0)
    try:
        _, skipped = scan_folder_report(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert [(s.filename, s.reason.split(" (")[0]) for s in skipped] == [("locked", "folder cannot be read")]


def test_catalog_lines_that_are_not_utf8_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "c.jsonl").write_bytes(
        b'{"id": "a", "local_filename": "a.jpg"}\n{"id": "b\xff", "local_filename": "b.jpg"}\n'
    )
    refs, skipped, _ = load_metadata(tmp_path / "c.jsonl")
    assert [r.id for r in refs] == ["a"] and [(s.filename, s.reason) for s in skipped] == [
        ("c.jsonl:2", "not valid UTF-8")
    ]
