"""Several images per item: item folders, catalog image lists, views collapsed before the decision, text search."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import write_covers


def _image(path: Path, cover: int, gain: float = 1.0) -> None:
    """Synthetic cover ``cover`` written to ``path`` (``gain`` != 1: another exposure of the same art)."""
    import cv2
    import numpy as np

    from cover_id.evaluate.synth import make_cover

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.clip(make_cover(cover, (240, 320)).astype(np.float32) * gain, 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)


def _photo(tmp: Path, cover: int, seed: int) -> Path:
    import cv2
    import numpy as np

    from cover_id.evaluate.synth import make_background, make_cover, place_in_scene

    rng = np.random.default_rng(seed)
    scene, _ = place_in_scene(make_cover(cover, (240, 320)), make_background(seed, (960, 720)), rng)
    path = tmp / f"photo_{cover}_{seed}.jpg"
    cv2.imwrite(str(path), scene)
    return path


def _identify(index: Path, photo: Path) -> dict:
    from cover_id.pipeline import Identifier

    return Identifier.from_index(index, {"threads": 1}).identify(photo)


def test_item_folders_and_catalog_image_lists(tmp_path: Path) -> None:
    from cover_id.index.catalog import load_metadata, scan_folder_report

    refs = tmp_path / "refs"
    _image(refs / "LOCH-JP001_dark_magician" / "front.jpg", 1)
    _image(refs / "LOCH-JP001_dark_magician" / "back.jpg", 2)
    (refs / "LOCH-JP001_dark_magician" / "item.json").write_text('{"artist": "K. Takahashi"}')
    _image(refs / "shelf" / "the_matrix.jpg", 3)  # a folder without item.json: every image is an item
    _image(refs / "shelf" / "heat.jpg", 4)
    found, skipped = scan_folder_report(refs)
    assert skipped == []
    recs = {r.id: r.record() for r in found}
    assert set(recs) == {
        "loch-jp001-dark-magician",
        "loch-jp001-dark-magician--front",
        "shelf--the-matrix",
        "shelf--heat",
    }
    primary = recs["loch-jp001-dark-magician"]
    assert primary["filename"] == "LOCH-JP001_dark_magician/back.jpg"  # the first image (sorted) is the primary view
    assert primary["name"] == "Dark Magician" and primary["set_code"] == "LOCH-JP001"
    assert primary["artist"] == "K. Takahashi" and primary["item"] == "loch-jp001-dark-magician"
    assert recs["loch-jp001-dark-magician--front"]["item"] == "loch-jp001-dark-magician"
    assert "item" not in recs["shelf--heat"]

    (refs / "LOCH-JP001_dark_magician" / "item.json").write_text("{not json")
    found, skipped = scan_folder_report(refs)
    assert len(found) == 4 and "item.json" in skipped[0].filename and "ignored" in skipped[0].reason

    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        json.dumps(
            {
                "id": "heat",
                "name": "Heat",
                "local_filename": "refs/shelf/heat.jpg",
                "images": ["refs/shelf/the_matrix.jpg", "refs/shelf/heat.jpg"],
            }
        )
        + "\n"
        + json.dumps({"id": "odd", "local_filename": "x.jpg", "images": "not a list"})
        + "\n"
    )
    refs_m, skipped_m, _ = load_metadata(catalog)
    assert [(r.id, r.filename, r.fields.get("item")) for r in refs_m] == [
        ("heat", "refs/shelf/heat.jpg", "heat"),
        ("heat--the-matrix", "refs/shelf/the_matrix.jpg", "heat"),
    ]
    assert "images must be a list" in skipped_m[0].reason


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict:
    """Cover 3 as one item with two images (two exposures of the same art), among 6 other covers."""
    from cover_id.index.build import build_index

    root = tmp_path_factory.mktemp("items")
    refs = root / "refs"
    write_covers(refs, 6, start=10)
    _image(refs / "cover_three" / "a.jpg", 3)
    _image(refs / "cover_three" / "b.jpg", 3, gain=0.8)
    (refs / "cover_three" / "item.json").write_text('{"year": 2003}')
    build_index(root / "idx", refs=refs, settings={"encoder": "local"}, show_progress=False)
    return {"root": root, "index": root / "idx", "photo": _photo(root, 3, 21)}


def test_views_of_one_item_are_never_each_others_rival(twins: dict) -> None:
    from cover_id.identify import retrieve
    from cover_id.identify.decide import choose
    from cover_id.identify.items import collapse
    from cover_id.identify.verify import verify
    from cover_id.identify.views import make_views, photo_features
    from cover_id.pipeline import Identifier

    ident = Identifier.from_index(twins["index"], {"threads": 1})
    one = ident.identify(twins["photo"])
    assert one["decision"] == "accept", one["decision"]
    m = one["match"]
    assert m["id"] == "cover-three" and m["item"] == "cover-three" and m["year"] == 2003
    assert m["filename"] == "cover_three/a.jpg"  # the item's primary image, whichever view matched
    assert m.get("view") in (None, "cover-three--b")
    assert all(a["id"] != "cover-three" for a in one["alternatives"])  # the other view is not an alternative

    # the same candidates without the collapse: the two views compete and the photo cannot be accepted
    store = ident.store
    image, _ = ident.read(twins["photo"])
    quads = ident.detector.detect(image, max_quads=1)
    full, views = make_views(image, photo_features(image), quads[0] if quads else None)
    vectors = retrieve.embed_views(ident.encoder, store, views)
    rows, cosines = retrieve.shortlist(store, views, vectors, 25, 15)
    variants = verify(ident.reranker, ident._pool(), store, full, views, rows, cosines)
    ordered, decision = choose(store, variants, ident.policy)
    top2 = {store.records[x.ref_index]["id"] for x in ordered[0][1].ranked[:2]}
    assert decision == "review" and top2 == {"cover-three", "cover-three--b"}
    assert choose(store, collapse(store, variants), ident.policy)[1] == "accept"


def test_a_catalog_view_carries_its_item(tmp_path: Path) -> None:
    from cover_id.index.build import build_index

    write_covers(tmp_path / "refs", 5)
    _image(tmp_path / "refs" / "poster_side.jpg", 7)  # the poster's other side: a picture of its own
    lines = [
        {"id": f"c{i}", "name": f"Cover {i}", "local_filename": f"refs/cover_{i:03d}.jpg", "price": i} for i in range(5)
    ]
    lines[2]["images"] = ["refs/poster_side.jpg"]
    (tmp_path / "catalog.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    build_index(
        tmp_path / "idx", metadata=tmp_path / "catalog.jsonl", settings={"encoder": "local"}, show_progress=False
    )
    r = _identify(tmp_path / "idx", _photo(tmp_path, 7, 5))
    assert r["decision"] == "accept"
    assert r["match"]["id"] == "c2" and r["match"]["filename"] == "refs/cover_002.jpg" and r["match"]["price"] == 2
    assert r["match"]["view"] == "c2--poster-side" and r["match"]["item"] == "c2"
    plain = _identify(tmp_path / "idx", _photo(tmp_path, 4, 6))  # an item of one image: no new fields
    assert plain["match"]["id"] == "c4" and "view" not in plain["match"] and "item" not in plain["match"]


def test_text_search_follows_every_write_and_old_indexes_are_migrated(tmp_path: Path) -> None:
    from cover_id.index.build import build_index
    from cover_id.index.store import IndexStore
    from cover_id.pipeline import Identifier
    from cover_id.server.collection import Collection

    write_covers(tmp_path / "refs", 4)
    lines = [
        {"id": "wave", "name": "The Great Wave", "artist": "Hokusai", "local_filename": "refs/cover_000.jpg"},
        {
            "id": "stars",
            "name": "Starry Night",
            "artist": "Van Gogh",
            "local_filename": "refs/cover_001.jpg",
            "tags": ["night", "Saint-Rémy"],
        },
        {"id": "card", "name": "Dark Magician", "set_code": "LOCH-JP001", "local_filename": "refs/cover_002.jpg"},
    ]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(x) + "\n" for x in lines))
    index = tmp_path / "idx"
    build_index(index, metadata=catalog, settings={"encoder": "local"}, show_progress=False)

    def ids(q: str) -> list[str]:
        store = IndexStore.open(index)
        return [store.records[i]["id"] for i in store.text_search(q)]

    assert ids("hokus") == ["wave"] and ids("van gogh") == ["stars"] and ids("remy") == ["stars"]
    assert ids("LOCH-JP001") == ["card"] and ids("jp001") == ["card"] and ids("night") == ["stars"]
    assert ids("wave gogh") == [] and ids('"') == [] and ids("") == []

    # an index written before text search and items: the next open adds both, nothing else changes
    with sqlite3.connect(index / "refs.db") as db:
        for t in ("refs_fts_add", "refs_fts_change", "refs_fts_drop", "refs_item"):
            db.execute(f"DROP TRIGGER {t}")
        db.execute("DROP TABLE refs_fts")
        db.execute("DROP INDEX by_item")
        db.execute("ALTER TABLE refs DROP COLUMN item")
    assert ids("hokusai") == ["wave"]
    with sqlite3.connect(index / "refs.db") as db:
        assert "item" in {r[1] for r in db.execute("PRAGMA table_info(refs)")}

    # re-running the build on a changed catalog, adding and removing while serving: the search follows
    lines[0]["artist"] = "Katsushika Hokusai"
    catalog.write_text("".join(json.dumps(x) + "\n" for x in lines))
    build_index(index, metadata=catalog, settings={"encoder": "local"}, show_progress=False)
    assert ids("katsushika") == ["wave"]
    coll = Collection(Identifier.from_index(index, {"threads": 1}), index)
    coll.add((tmp_path / "refs" / "cover_003.jpg").read_bytes(), "Water Lilies", "lilies", {"artist": "Monet"})
    assert [coll.store.records[i]["id"] for i in coll.store.text_search("monet")] == ["lilies"]
    assert ids("monet") == ["lilies"]  # committed: another process sees it
    build_index(index, metadata=catalog, settings={"encoder": "local"}, show_progress=False)
    assert ids("monet") == ["lilies"]  # a re-run of the build keeps what was added while serving
    coll = Collection(Identifier.from_index(index, {"threads": 1}), index)
    coll.remove("lilies")
    assert ids("monet") == [] and coll.store.text_search("monet") == []


def test_two_exposures_of_one_art_as_separate_references_do_not_crash(tmp_path: Path) -> None:
    """Twins that differ only in exposure: the variant check cannot tell them apart, and says so."""
    from cover_id.index.build import build_index
    from cover_id.pipeline import Identifier

    refs = tmp_path / "refs"
    write_covers(refs, 4, start=10)
    _image(refs / "a.jpg", 3)
    _image(refs / "b.jpg", 3, gain=0.8)
    build_index(tmp_path / "idx", refs=refs, settings={"encoder": "local"}, show_progress=False)
    out = Identifier.from_index(tmp_path / "idx", {"threads": 1}).identify(_photo(tmp_path, 3, 21))
    assert "error" not in out and out["decision"] in ("accept", "review")
    assert out["match"]["id"] in ("a", "b")
