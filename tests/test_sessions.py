"""Scan sessions and feedback on a real uvicorn server; the CLI's --session; the exported truth.csv feeds verify."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("httpx")

from tests.test_serve import build_world, detail, jpeg, scene_jpeg, serve


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sessions")
    w = build_world(root)
    (root / "prices.json").write_text(
        json.dumps({"cover-002": {"value": 4.5, "currency": "EUR"}, "cover-005": {"value": 10, "currency": "EUR"}})
    )
    w["prices"] = root / "prices.json"
    return w


@pytest.fixture
def srv(world: dict) -> Iterator[SimpleNamespace]:
    s = serve(world["index"], {"workers": 2, "prices": str(world["prices"])})
    yield s
    s.client.close()
    s.server.stop()


def test_session_lifecycle_survives_restart(world: dict, srv: SimpleNamespace) -> None:
    c = srv.client
    r = c.post("/api/sessions", json={"name": "record fair"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert c.post("/api/sessions", json={"name": "record fair"}).status_code == 409
    photo2 = world["photo"]
    photo5, _ = scene_jpeg(5, 11)
    a = c.post(f"/api/identify?session={sid}", files=jpeg(photo2, "shelf_1.jpg")).json()
    assert a["match"]["id"] == "cover-002" and a["session_item"]["count"] == 1
    assert a["session_item"]["price"] == {"value": 4.5, "currency": "EUR", "source": "prices"}
    b = c.post(f"/api/identify?session={sid}", files=jpeg(photo2, "shelf_2.jpg")).json()
    assert b["session_item"]["id"] == a["session_item"]["id"] and b["session_item"]["count"] == 2
    c.post(f"/api/identify?session={sid}", files=jpeg(photo5, "shelf_3.jpg"))
    s = c.get(f"/api/sessions/{sid}").json()
    assert [(i["ref_id"], i["count"]) for i in s["items"]] == [("cover-005", 1), ("cover-002", 2)]
    assert s["count"] == 3 and s["total"] == {"by_currency": {"EUR": 19.0}, "priced": 3, "unpriced": 0}
    thumb = c.get(f"/api/sessions/{sid}/items/{s['items'][0]['id']}/thumb")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"

    # undo takes back the last addition only; remove takes the item whatever its count
    u = c.post(f"/api/sessions/{sid}/undo").json()
    assert u["undone"]["ref_id"] == "cover-005" and [i["ref_id"] for i in u["session"]["items"]] == ["cover-002"]
    srv.server.stop()  # a restart keeps everything (the file beside the index)
    srv2 = serve(world["index"], {"prices": str(world["prices"])})
    try:
        c2 = srv2.client
        assert any(x["id"] == sid and x["count"] == 2 for x in c2.get("/api/sessions").json()["sessions"])
        exp = c2.get(f"/api/sessions/{sid}/export", params={"format": "csv"})
        assert exp.status_code == 200 and "attachment" in exp.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(exp.text)))
        assert rows[0]["ref_id"] == "cover-002" and rows[0]["count"] == "2" and rows[0]["price"] == "4.5"
        assert rows[-1]["name"] == "TOTAL EUR" and rows[-1]["price"] == "9.0"
        js = c2.get(f"/api/sessions/{sid}/export?format=json").json()
        assert js["name"] == "record fair" and js["rows"][0]["count"] == 2 and js["total"]["by_currency"]["EUR"] == 9
        item = js["items"][0]["id"]
        assert c2.delete(f"/api/sessions/{sid}/items/{item}").json()["items"] == []
        assert c2.post(f"/api/sessions/{sid}/undo").json()["undone"] is None
        assert c2.delete(f"/api/sessions/{sid}").status_code == 200
        assert c2.get(f"/api/sessions/{sid}").status_code == 404
    finally:
        srv2.client.close()
        srv2.server.stop()
    db = world["index"].parent / "idx.sessions.sqlite"
    assert db.is_file() and not (world["index"] / "idx.sessions.sqlite").exists()  # beside the index, not in it
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_session_errors_are_clear(world: dict, srv: SimpleNamespace) -> None:
    c = srv.client
    r = c.post("/api/identify?session=nope", files=jpeg(world["photo"]))
    assert r.status_code == 404 and "no session with id 'nope'" in detail(r)
    sid = c.post("/api/sessions", json={}).json()["id"]  # a default name (the date)
    assert c.get(f"/api/sessions/{sid}/items/99/thumb").status_code == 404
    assert c.delete(f"/api/sessions/{sid}/items/99").status_code == 404
    r = c.get(f"/api/sessions/{sid}/export?format=xml")
    assert r.status_code == 422 and "format" in detail(r)
    r = c.post(f"/api/sessions/{sid}/items", files=jpeg(world["photo"]), data={"ref_id": "no-such-ref"})
    assert r.status_code == 404 and "no-such-ref" in detail(r)
    r = c.post(f"/api/sessions/{sid}/items", files=jpeg(b"not an image"), data={"ref_id": "cover-001"})
    assert r.status_code == 201 and r.json()["has_thumb"] is False  # kept, without a thumbnail
    r = c.post(f"/api/sessions/{sid}/items", files=jpeg(world["photo"]), data={"ref_id": "cover-001"})
    assert r.json()["count"] == 2 and r.json()["price"] is None


def test_feedback_corrects_items_and_exports_truth_for_verify(
    world: dict, srv: SimpleNamespace, tmp_path: Path
) -> None:
    c = srv.client
    sid = c.post("/api/sessions", json={"name": "box of cards"}).json()["id"]
    first = c.post(f"/api/identify?session={sid}", files=jpeg(world["photo"], "p2.jpg")).json()["session_item"]
    photo5, _ = scene_jpeg(5, 12)
    second = c.post(f"/api/identify?session={sid}", files=jpeg(photo5, "p5.jpg")).json()["session_item"]
    r = c.post("/api/feedback", json={"action": "confirm", "session": sid, "item": first["id"]})
    assert r.status_code == 201 and r.json()["truth"] == "cover-002"
    # the confirmed photo became an extra view of its item, used from the next request on
    assert r.json()["taught"] == "yes" and r.json()["view"]["how"] == "homography", r.json()
    view = r.json()["view"]["id"]
    assert view == "cover-002--feedback-1" and r.json()["view"]["inliers"] >= 12
    again = c.post("/api/identify", files=jpeg(world["photo"], "p2-again.jpg")).json()
    assert again["decision"] == "accept" and again["match"]["id"] == "cover-002" and again["match"]["view"] == view
    assert again["match"]["filename"] == "refs/cover_002.jpg"  # still the item's own image
    assert all(a["id"] != "cover-002" for a in again["alternatives"])
    assert c.get("/api/refs").json()["total"] == 8  # browsing lists items, not their views
    assert c.get(f"/api/refs/{view}").json()["item"] == "cover-002"
    assert c.get("/api/refs/cover-002").json()["views"] == [view]
    assert c.get(f"/api/refs/{view}/image").content[:2] == b"\xff\xd8"  # the rectified photo
    # the user says the second one is cover-006 (wrong on purpose: verify must then see it as a miss)
    r = c.post("/api/feedback", json={"action": "correct", "session": sid, "item": second["id"], "ref_id": "cover-006"})
    assert r.status_code == 201 and r.json()["predicted"] == "cover-005"
    assert r.json()["view"] is None and r.json()["taught"] == "no: the photo matches another item (cover-005)"
    items = {i["id"]: i for i in c.get(f"/api/sessions/{sid}").json()["items"]}
    fixed = items[second["id"]]
    assert fixed["ref_id"] == "cover-006" and fixed["correction"]["from"] == "cover-005" and fixed["confirmed"]
    assert items[first["id"]]["confirmed"] and items[first["id"]]["correction"] is None
    # a photo of its own, "not in my collection"
    absent, _ = scene_jpeg(7, 13)
    r = c.post(
        "/api/feedback", files=jpeg(absent, "stranger.jpg"), data={"action": "absent", "predicted_id": "cover-007"}
    )
    assert r.status_code == 201 and r.json()["truth"] is None and r.json()["view"] is None
    for bad, message in [
        ({"action": "correct", "session": sid, "item": first["id"]}, "ref_id"),
        ({"action": "correct", "session": sid, "item": first["id"], "ref_id": "zzz"}, "zzz"),
        ({"action": "maybe", "session": sid, "item": first["id"]}, "action"),
        ({"action": "confirm", "session": sid, "item": 999}, "no item 999"),
    ]:
        r = c.post("/api/feedback", json=bad)
        assert r.status_code in (404, 422) and message in detail(r), (bad, r.text)
    assert c.post("/api/feedback", content=b"x", headers={"content-type": "text/plain"}).status_code == 422

    z = c.get("/api/feedback/export")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    out = tmp_path / "labels"
    zipfile.ZipFile(io.BytesIO(z.content)).extractall(out)
    rows = list(csv.DictReader(open(out / "truth.csv")))
    assert [(r["reference"], r["action"]) for r in rows] == [
        ("cover-002", "confirm"),
        ("cover-006", "correct"),
        ("", "absent"),
    ]
    assert all((out / r["photo"]).is_file() for r in rows)

    # `cover-id verify --queries truth.csv --calibrate` reads the export as it is (on a copy of the index)
    import shutil
    import subprocess
    import sys

    index = tmp_path / "idx"
    shutil.copytree(world["index"], index)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cover_id",
            "verify",
            "--index",
            str(index),
            "--samples",
            "-1",
            "--queries",
            str(out / "truth.csv"),
            "--calibrate",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    ph = report["photos"]
    assert ph["n"] == 3 and ph["n_in_collection"] == 2 and ph["n_absent"] == 1
    assert ph["top1"] == 0.5  # cover-006 was a wrong label on purpose: verify counts that photo as a miss
    assert "calibration" in report
    assert json.loads((index / "manifest.json").read_text())["calibration"]


def test_cli_identify_adds_batches_to_a_session(world: dict, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from cover_id.sessions import SessionStore, sessions_path

    index = tmp_path / "idx"
    shutil.copytree(world["index"], index)
    photos = tmp_path / "photos"
    photos.mkdir()
    for n, (cover, seed) in enumerate([(2, 20), (2, 21), (5, 22)]):
        (photos / f"p{n}.jpg").write_bytes(scene_jpeg(cover, seed)[0])
    (photos / "broken.jpg").write_bytes(b"junk")  # one bad file: one error line, the batch goes on
    args = [sys.executable, "-m", "cover_id", "identify", str(photos), "--index", str(index), "--session", "shelf 3"]
    res = subprocess.run(
        [*args, "--json", "--prices", str(world["prices"])], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1, res.stderr  # some photos failed
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 4 and sum("error" in x for x in lines) == 1
    assert [x["match"]["price"] for x in lines if x.get("match", {}).get("id") == "cover-005"][0]["value"] == 10
    again = [
        sys.executable,
        "-m",
        "cover_id",
        "identify",
        str(photos / "p0.jpg"),
        "--index",
        str(index),
        "--session",
        "shelf 3",
    ]
    res2 = subprocess.run(again, capture_output=True, text=True, timeout=300)
    assert res2.returncode == 0 and "session 'shelf 3'" in res2.stdout
    store = SessionStore(sessions_path(index))
    [s] = store.list()
    got = store.get(s["id"])
    assert s["name"] == "shelf 3" and {i["ref_id"]: i["count"] for i in got["items"]} == {
        "cover-002": 3,
        "cover-005": 1,
    }
    assert all(i["has_thumb"] and i["has_photo"] for i in got["items"])


def test_unusable_sessions_file_is_one_clear_error(tmp_path: Path) -> None:
    from cover_id.errors import CoverIdError
    from cover_id.sessions import SessionStore

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CoverIdError, match="sessions database s.sqlite cannot be opened"):
        SessionStore(tmp_path / "a-file" / "s.sqlite").list()
    junk = tmp_path / "junk.sessions.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CoverIdError, match="cannot be opened"):
        SessionStore(junk).create("x")
    assert junk.read_bytes().startswith(b"this is not")  # nothing overwritten


def test_feedback_on_an_unreadable_photo_is_a_400(srv: SimpleNamespace) -> None:
    r = srv.client.post("/api/feedback", files=jpeg(b"\xff\xd8\xffjunk"), data={"action": "absent"})
    assert r.status_code == 400 and "/" not in detail(r)


def test_teaching_needs_the_api_key_and_deleting_an_item_takes_its_views(world: dict, tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "idx"
    shutil.copytree(world["index"], index)
    s = serve(index, {"api_key": "sesame"})
    try:
        c = s.client
        form = {"action": "confirm", "ref_id": "cover-002"}
        r = c.post("/api/feedback", files=jpeg(world["photo"]), data=form)
        assert r.status_code == 201 and r.json()["view"] is None and "API key" in r.json()["taught"]
        r = c.post(
            "/api/feedback",
            files=jpeg(world["photo"]),
            data={**form, "teach": "false"},
            headers={"X-API-Key": "sesame"},
        )
        assert r.json()["taught"] == "no: not asked to"
        r = c.post("/api/feedback", files=jpeg(world["photo"]), data=form, headers={"X-API-Key": "sesame"})
        assert r.json()["taught"] == "yes", r.json()
        view = r.json()["view"]["id"]
        assert (tmp_path / "idx.added" / f"{view}.jpg").is_file()
        hits = c.get("/api/search", params={"q": "number 2"}).json()
        assert [x["id"] for x in hits["items"]] == ["cover-002"] and hits["items"][0]["via"] == "catalog"
        assert hits["text_tower"] is False
        assert c.get("/api/refs", params={"q": "film"}).json()["total"] == 8
        assert c.delete("/api/refs/cover-002", headers={"X-API-Key": "sesame"}).status_code == 200
        assert c.get(f"/api/refs/{view}").status_code == 404  # the item's views went with it
        assert not (tmp_path / "idx.added" / f"{view}.jpg").exists()
        after = c.post("/api/identify", files=jpeg(world["photo"])).json()
        assert after["decision"] != "accept" and (after["match"] or {}).get("id") != "cover-002"
    finally:
        s.client.close()
        s.server.stop()
