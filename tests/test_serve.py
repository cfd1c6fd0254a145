"""`cover-id serve` on a real uvicorn server (loopback, free port): every endpoint, bad inputs, concurrency."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.conftest import write_covers  # noqa: E402 (after the skips: needs the server extras)

KEY = "s3cret-key"
N_COVERS = 8
GENRES = ["drama", "comedy", "horror"]


# ---- shared helpers (the browser test and the benchmark's synthetic mode use them too) ----------------
def scene_jpeg(cover: int, seed: int, size: tuple[int, int] = (960, 720)) -> tuple[bytes, list[list[float]]]:
    """A photo of synthetic cover ``cover`` in a cluttered scene, and the cover's corners in it."""
    import cv2
    import numpy as np

    from cover_id.evaluate.synth import make_background, make_cover, place_in_scene

    rng = np.random.default_rng(seed)
    scene, corners = place_in_scene(make_cover(cover, (240, 320)), make_background(seed, size), rng)
    ok, buf = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes(), corners.tolist()


def cover_jpeg(cover: int) -> bytes:
    import cv2

    from cover_id.evaluate.synth import make_cover

    return cv2.imencode(".jpg", make_cover(cover, (240, 320)))[1].tobytes()


def build_world(root: Path, n: int = N_COVERS, settings: dict | None = None) -> dict:
    """``n`` synthetic covers with catalog fields (year, genre), indexed with the local encoder."""
    from cover_id.index.build import build_index

    write_covers(root / "refs", n)
    with open(root / "catalog.jsonl", "w") as f:
        f.writelines(
            json.dumps(
                {
                    "id": f"cover-{i:03d}",
                    "name": f"Film number {i}",
                    "local_filename": f"refs/cover_{i:03d}.jpg",
                    "year": 1990 + i,
                    "genre": GENRES[i % len(GENRES)],
                }
            )
            + "\n"
            for i in range(n)
        )
    build_index(
        root / "idx", metadata=root / "catalog.jsonl", settings=settings or {"encoder": "local"}, show_progress=False
    )
    photo, corners = scene_jpeg(2, 10)
    (root / "photo_2.jpg").write_bytes(photo)
    return {"root": root, "index": root / "idx", "photo": photo, "photo_path": root / "photo_2.jpg", "corners": corners}


def serve(index: Path, settings: dict) -> SimpleNamespace:
    from cover_id.pipeline import Identifier
    from cover_id.server import create_app, start_in_thread

    ident = Identifier.from_index(index, {"threads": 1})
    srv = start_in_thread(create_app(ident, index, settings))
    return SimpleNamespace(url=srv.url, ident=ident, server=srv, client=httpx.Client(base_url=srv.url, timeout=60))


def detail(r: httpx.Response) -> str:
    body = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body["detail"]


def jpeg(data: bytes, name: str = "photo.jpg", ctype: str = "image/jpeg") -> dict:
    return {"file": (name, data, ctype)}


# ---- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return build_world(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def srv(world: dict) -> Iterator[SimpleNamespace]:
    """The read-mostly server: API key set, 1 MB upload limit, 2 worker threads."""
    s = serve(world["index"], {"workers": 2, "api_key": KEY, "max_upload_mb": 1})
    yield s
    s.client.close()
    s.server.stop()


@pytest.fixture
def writable(world: dict, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A server on a private copy of the index, for tests that change the collection."""
    index = tmp_path / "idx"
    shutil.copytree(world["index"], index)
    s = serve(index, {"workers": 2, "api_key": KEY, "cors_origins": ["http://cards.example"]})
    s.index = index
    yield s
    s.client.close()
    s.server.stop()


# ---- service ------------------------------------------------------------------------------
def test_health_reports_index_encoder_and_counters(srv: SimpleNamespace) -> None:
    h = srv.client.get("/health").json()
    assert h["status"] == "ok" and h["index"]["size"] == N_COVERS
    assert h["encoder"]["name"] == "local" and h["text_search"] is False
    assert "projection" in h and h["calibration"]["source"] in ("defaults", "calibration", "settings")
    assert h["workers"] == 2 and h["writes"]["api_key_required"] is True and h["max_upload_mb"] == 1
    before = h["requests"]
    srv.client.get("/api/refs")
    h2 = srv.client.get("/health").json()
    assert h2["requests"] >= before + 2 and h2["last_response_ms"] >= 0 and h2["uptime_s"] >= h["uptime_s"]


def test_docs_openapi_and_web_page(srv: SimpleNamespace) -> None:
    docs = srv.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    js = re.search(r"""src=["']([^"']*swagger-ui-bundle\.js)""", docs.text).group(1)
    if js.startswith("/"):  # served by us (offline bundle installed): it must load
        assert srv.client.get(js).status_code == 200
    paths = srv.client.get("/openapi.json").json()["paths"]
    for p in [
        "/health",
        "/api/identify",
        "/api/search-by-image",
        "/api/search-by-text",
        "/api/refs",
        "/api/refs/{ref_id}",
        "/api/refs/{ref_id}/image",
        "/api/stats",
    ]:
        assert p in paths
    assert {"post", "get"} <= set(paths["/api/refs"]) and "delete" in paths["/api/refs/{ref_id}"]
    page = srv.client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "/static/app.js" in page.text
    for asset in ["/static/app.js", "/static/style.css"]:
        assert srv.client.get(asset).status_code == 200


# ---- identify and search --------------------------------------------------------------------
def test_identify_returns_the_cli_json_object(srv: SimpleNamespace, world: dict) -> None:
    r = srv.client.post("/api/identify", files=jpeg(world["photo"], "photo_2.jpg"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "accept" and body["match"]["id"] == "cover-002"
    assert body["match"]["genre"] == "horror" and body["match"]["year"] == 1992  # catalog fields travel along
    assert body["input"] == "photo_2.jpg" and body["image_size"] == [960, 720]
    cli = srv.ident.identify(world["photo_path"])  # what `cover-id identify --json` prints
    assert set(body) == set(cli)
    for key in ["decision", "strategy", "inliers", "image_size"]:
        assert body[key] == cli[key]
    assert body["match"] == cli["match"]
    assert body["quad"] is None or len(body["quad"]) == 4
    assert body["match_quad"] is not None and len(body["match_quad"]) == 4

    multi = srv.client.post("/api/identify?multi=true", files=jpeg(world["photo"]))
    assert multi.status_code == 200 and multi.json()["multi"] is True
    assert multi.json()["count"] == len(multi.json()["covers"])
    if body["quad"] is not None:  # --multi reports covers found by the quad detector
        assert [c["match"]["id"] for c in multi.json()["covers"]] == ["cover-002"]
    form_multi = srv.client.post("/api/identify", files=jpeg(world["photo"]), data={"multi": "true"})
    assert form_multi.json()["multi"] is True


def test_search_by_image_ranks_references(srv: SimpleNamespace) -> None:
    r = srv.client.post("/api/search-by-image?k=3", files=jpeg(cover_jpeg(5), "cover.jpg"))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and results[0]["id"] == "cover-005"
    assert [x["cosine"] for x in results] == sorted((x["cosine"] for x in results), reverse=True)
    assert results[0]["image_url"].startswith("/api/refs/cover-005/image") and "genre" in results[0]
    big_k = srv.client.post("/api/search-by-image?k=50", files=jpeg(cover_jpeg(5)))
    assert len(big_k.json()["results"]) == N_COVERS  # never more than the collection holds


def test_search_by_text_needs_a_text_tower(srv: SimpleNamespace) -> None:
    r = srv.client.get("/api/search-by-text", params={"query": "a red cover"})
    assert r.status_code == 400 and "text tower" in detail(r) and "clip" in detail(r)


@pytest.mark.slow
def test_search_by_text_with_clip(tmp_path: Path) -> None:
    """Random-weights CLIP (no download): the text path runs end to end."""
    pytest.importorskip("open_clip")
    from cover_id.index.build import build_index

    write_covers(tmp_path / "refs", 3)
    build_index(
        tmp_path / "idx",
        refs=tmp_path / "refs",
        settings={"encoder": "clip", "pretrained": "none"},
        show_progress=False,
    )
    # Re-creating the encoder from its spec skips None params (and would ask for the default weights):
    # spell the random-weights choice out so the server loads the same encoder offline.
    manifest = tmp_path / "idx" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["encoder"]["params"]["pretrained"] = "none"
    manifest.write_text(json.dumps(m))
    s = serve(tmp_path / "idx", {"workers": 1})
    try:
        assert s.client.get("/health").json()["text_search"] is True
        r = s.client.get("/api/search-by-text", params={"query": "a blue poster", "k": 2})
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert len(hits) == 2 and all("cosine" in h and h["id"].startswith("cover-") for h in hits)
        assert s.client.get("/api/search-by-text", params={"query": ""}).status_code == 422
    finally:
        s.client.close()
        s.server.stop()


# ---- browsing ---------------------------------------------------------------------------------
def test_refs_listing_pages_and_filters(srv: SimpleNamespace) -> None:
    page = srv.client.get("/api/refs", params={"offset": 2, "limit": 3}).json()
    assert page["total"] == N_COVERS and [x["id"] for x in page["items"]] == ["cover-002", "cover-003", "cover-004"]
    assert all(x["image_url"].startswith(f"/api/refs/{x['id']}/image?v=") for x in page["items"])
    drama = srv.client.get("/api/refs", params={"q": "DRAMA", "limit": 50}).json()
    assert drama["total"] == 3 and all(x["genre"] == "drama" for x in drama["items"])
    assert srv.client.get("/api/refs", params={"q": "number 7"}).json()["total"] == 1
    assert srv.client.get("/api/refs", params={"offset": 100}).json()["items"] == []


def test_one_ref_and_its_image_with_cache_headers(srv: SimpleNamespace, world: dict) -> None:
    rec = srv.client.get("/api/refs/cover-003").json()
    assert rec["name"] == "Film number 3" and rec["year"] == 1993 and rec["added_via_api"] is False
    img = srv.client.get("/api/refs/cover-003/image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content == (world["root"] / "refs" / "cover_003.jpg").read_bytes()
    etag = img.headers["etag"]
    assert "max-age" in img.headers["cache-control"]
    again = srv.client.get("/api/refs/cover-003/image", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    versioned = srv.client.get(rec["image_url"])
    assert "immutable" in versioned.headers["cache-control"]
    thumb = srv.client.get("/api/refs/cover-003/image", params={"size": 64})
    import cv2
    import numpy as np

    small = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.headers["content-type"] == "image/jpeg" and max(small.shape[:2]) == 64


def test_stats_summarise_fields(srv: SimpleNamespace) -> None:
    s = srv.client.get("/api/stats").json()
    assert s["references"] == N_COVERS and s["encoder"]["name"] == "local" and s["dim"] > 0
    assert s["fields"]["genre"]["counts"] == {"drama": 3, "comedy": 3, "horror": 2}
    year = s["fields"]["year"]
    assert year["type"] == "number" and (year["min"], year["max"]) == (1990, 1997)


# ---- bad inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/identify", "/api/search-by-image"])
def test_bad_uploads_get_clear_errors(srv: SimpleNamespace, world: dict, path: str) -> None:
    c = srv.client
    r = c.post(path, files=jpeg(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10, "broken.jpg"))
    assert r.status_code == 400 and ("not an image" in detail(r) or "corrupt" in detail(r))
    truncated = world["photo"][: len(world["photo"]) // 3]
    r = c.post(path, files=jpeg(truncated, "truncated.jpg"))
    assert r.status_code in (200, 400), r.text  # Pillow may still decode a cut JPEG; never a 500
    r = c.post(path, files=jpeg(b"", "empty.jpg"))
    assert r.status_code == 400 and "empty" in detail(r)
    r = c.post(path, files=jpeg(os.urandom(1536 * 1024), "huge.jpg"))
    assert r.status_code == 413 and "1 MB" in detail(r)
    r = c.post(path, files=jpeg(b"hello", "notes.txt", "text/plain"))
    assert r.status_code == 415 and "text/plain" in detail(r)
    r = c.post(path, files=jpeg(b"%PDF-1.4", "scan.pdf", "application/octet-stream"))
    assert r.status_code == 415 and "scan.pdf" in detail(r)
    r = c.post(path, content=world["photo"], headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "multipart" in detail(r)
    r = c.post(path, data={"nothing": "here"}, files={"other": ("x.jpg", b"x", "image/jpeg")})
    assert r.status_code == 422 and "'file'" in detail(r)


def test_streamed_upload_over_the_limit_is_refused(srv: SimpleNamespace) -> None:
    boundary = "cover-id-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    chunks = [head] + [os.urandom(256 * 1024) for _ in range(8)] + [f"\r\n--{boundary}--\r\n".encode()]
    r = srv.client.post(
        "/api/identify", content=iter(chunks), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )  # an iterator is sent chunked, without Content-Length
    assert r.status_code == 413 and "too large" in detail(r)


@pytest.mark.parametrize(
    "query",
    ["k=0", "k=51", "k=ten", "k=-3"],
)
def test_bad_k_is_422(srv: SimpleNamespace, query: str) -> None:
    r = srv.client.post(f"/api/search-by-image?{query}", files=jpeg(cover_jpeg(1)))
    assert r.status_code == 422 and "'k'" in detail(r)
    r = srv.client.get(f"/api/search-by-text?query=x&{query}")
    assert r.status_code == 422 and "'k'" in detail(r)


def test_bad_paging_and_unknown_ids(srv: SimpleNamespace) -> None:
    c = srv.client
    for params in [{"offset": -1}, {"limit": 0}, {"limit": 501}, {"limit": "many"}]:
        r = c.get("/api/refs", params=params)
        assert r.status_code == 422, params
        detail(r)
    for path in ["/api/refs/nope", "/api/refs/nope/image"]:
        r = c.get(path)
        assert r.status_code == 404 and "'nope'" in detail(r)
    r = c.delete("/api/refs/nope", headers={"X-API-Key": KEY})
    assert r.status_code == 404 and "'nope'" in detail(r)
    assert c.get("/api/refs/cover-001/image", params={"size": 5}).status_code == 422
    assert c.get("/api/no-such-endpoint").status_code == 404


def test_writes_need_the_api_key(srv: SimpleNamespace) -> None:
    c = srv.client
    files = jpeg(cover_jpeg(60), "new.jpg")
    r = c.post("/api/refs", files=files, data={"name": "Sixty"})
    assert r.status_code == 401 and "API key" in detail(r) and r.headers["www-authenticate"] == "Bearer"
    r = c.post("/api/refs", files=files, data={"name": "Sixty"}, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and "wrong" in detail(r)
    for headers in [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer nope"}]:
        assert c.delete("/api/refs/cover-001", headers=headers).status_code == 401
    assert c.get("/api/refs", params={"limit": 500}).json()["total"] == N_COVERS  # nothing changed
    # reads stay open
    assert c.get("/api/refs/cover-001").status_code == 200


# ---- changing the collection while serving ------------------------------------------------------------
def test_add_identify_delete_round_trip_is_persisted(writable: SimpleNamespace, world: dict) -> None:
    from cover_id.index.store import IndexStore

    c, auth = writable.client, {"X-API-Key": KEY}
    meta = {"year": 2005, "genre": "western", "tags": ["dusty", "classic"]}
    r = c.post(
        "/api/refs", files=jpeg(cover_jpeg(40), "the_long_ride.jpg"), data={"metadata": json.dumps(meta)}, headers=auth
    )
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["id"] == "the-long-ride" and rec["name"] == "The Long Ride" and rec["genre"] == "western"
    assert rec["references"] == N_COVERS + 1

    # visible to the next request: listing, image, identify, stats
    assert c.get("/api/refs/the-long-ride").json()["added_via_api"] is True
    img = c.get(rec["image_url"])
    assert img.status_code == 200 and img.content == cover_jpeg(40)
    photo, _ = scene_jpeg(40, 21)
    hit = c.post("/api/identify", files=jpeg(photo)).json()
    assert hit["match"]["id"] == "the-long-ride" and hit["decision"] in ("accept", "review")
    stats = c.get("/api/stats").json()
    assert stats["added_via_api"] == 1 and stats["fields"]["genre"]["counts"]["western"] == 1
    assert stats["fields"]["tags"]["counts"] == {"dusty": 1, "classic": 1}

    # persisted: a fresh load of the index folder has it, with its image kept beside the index
    disk = IndexStore.open(writable.index)
    i = disk.index_of("the-long-ride")
    assert i is not None and disk.image_path(i).read_bytes() == cover_jpeg(40)
    assert disk.image_path(i).parent == writable.index.parent / "idx.added"

    # explicit id, duplicates, bad ids and metadata
    r = c.post("/api/refs", files=jpeg(cover_jpeg(41)), data={"name": "Second", "id": "my.id_2"}, headers=auth)
    assert r.status_code == 201 and r.json()["id"] == "my.id_2"
    r = c.post("/api/refs", files=jpeg(cover_jpeg(42)), data={"name": "Again", "id": "my.id_2"}, headers=auth)
    assert r.status_code == 409 and "already exists" in detail(r)
    r = c.post("/api/refs", files=jpeg(cover_jpeg(42)), data={"name": "X", "id": "../../etc"}, headers=auth)
    assert r.status_code == 422 and "not allowed" in detail(r)
    r = c.post("/api/refs", files=jpeg(cover_jpeg(42)), data={"name": "X", "metadata": "{oops"}, headers=auth)
    assert r.status_code == 422 and "JSON" in detail(r)
    r = c.post("/api/refs", files=jpeg(cover_jpeg(42)), data={"name": "X", "metadata": '{"id": "x"}'}, headers=auth)
    assert r.status_code == 422 and "id" in detail(r)
    r = c.post("/api/refs", files=jpeg(b"nope", "x.jpg"), data={"name": "X"}, headers=auth)
    assert r.status_code == 400
    r = c.post("/api/refs", files=jpeg(b"nope", "x.gif", "image/gif"), data={"name": "X"}, headers=auth)
    assert r.status_code == 415
    same_name = c.post("/api/refs", files=jpeg(cover_jpeg(43)), data={"name": "The Long Ride"}, headers=auth)
    assert same_name.status_code == 201 and same_name.json()["id"] == "the-long-ride-2"

    # delete: gone from memory, from disk, and its uploaded image file too
    r = c.delete("/api/refs/the-long-ride", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["deleted"]["id"] == "the-long-ride"
    assert c.get("/api/refs/the-long-ride").status_code == 404
    assert c.post("/api/identify", files=jpeg(photo)).json()["match"]["id"] != "the-long-ride"
    assert IndexStore.open(writable.index).index_of("the-long-ride") is None
    assert not (writable.index.parent / "idx.added" / "the-long-ride.jpg").exists()
    # deleting an indexed reference keeps its original file (it is the user's, not ours)
    assert c.delete("/api/refs/cover-007", headers={"X-API-Key": KEY}).status_code == 200
    assert (world["root"] / "refs" / "cover_007.jpg").is_file()
    assert IndexStore.open(writable.index).size == N_COVERS + 1  # +3 added, -2 deleted


def test_cors_origins_are_configurable(writable: SimpleNamespace, srv: SimpleNamespace) -> None:
    pre = {
        "Origin": "http://cards.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key",
    }
    r = writable.client.options("/api/refs", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://cards.example"
    r = writable.client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert (
        "access-control-allow-origin"
        not in srv.client.get("/health", headers={"Origin": "http://cards.example"}).headers
    )


def test_concurrent_identify_while_the_collection_changes(writable: SimpleNamespace) -> None:
    """Readers never see a torn collection; concurrent writers lose nothing."""
    from cover_id.index.store import IndexStore

    url, auth = writable.url, {"X-API-Key": KEY}
    photo = scene_jpeg(2, 10)[0]
    new_ids = [f"new-{j}" for j in range(6)]
    doomed = {"new-0", "new-3", "cover-006"}
    problems: list[str] = []

    def reader(n: int) -> int:
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(n):
                r = c.post("/api/identify", files=jpeg(photo))
                if r.status_code != 200:
                    problems.append(f"identify {r.status_code}: {r.text[:200]}")
                    continue
                m = r.json()["match"]
                if m is None or m["id"] != "cover-002" or m["filename"] != "refs/cover_002.jpg":
                    problems.append(f"identify gave {m}")
                page = c.get("/api/refs", params={"limit": 500}).json()
                if page["total"] != len(page["items"]) or len({x["id"] for x in page["items"]}) != page["total"]:
                    problems.append("torn listing")
        return n

    def writer(ids: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for ref_id in ids:
                r = c.post(
                    "/api/refs",
                    files=jpeg(cover_jpeg(200 + int(ref_id[-1]))),
                    data={"name": ref_id, "id": ref_id},
                    headers=auth,
                )
                if r.status_code != 201:
                    problems.append(f"add {ref_id}: {r.status_code} {r.text[:200]}")
            for ref_id in ids:
                if ref_id in doomed:
                    r = c.delete(f"/api/refs/{ref_id}", headers=auth)
                    if r.status_code != 200:
                        problems.append(f"delete {ref_id}: {r.status_code}")

    def remover() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            r = c.delete("/api/refs/cover-006", headers=auth)
            if r.status_code != 200:
                problems.append(f"delete cover-006: {r.status_code}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(reader, 4) for _ in range(3)]
        futures += [pool.submit(writer, new_ids[:3]), pool.submit(writer, new_ids[3:]), pool.submit(remover)]
        for f in futures:
            f.result(timeout=180)
    assert time.monotonic() - t0 < 180
    assert not problems, problems

    expected = {f"cover-{i:03d}" for i in range(N_COVERS)} | set(new_ids)
    expected -= doomed
    served = {x["id"] for x in writable.client.get("/api/refs", params={"limit": 500}).json()["items"]}
    assert served == expected
    assert {r["id"] for r in IndexStore.open(writable.index).records} == expected  # nothing lost on disk either
    added = sorted(p.stem for p in (writable.index.parent / "idx.added").iterdir())
    assert added == sorted(expected & set(new_ids))


# ---- the command --------------------------------------------------------------------------------
def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, timeout=120, **kw)


def test_serve_command_starts_and_answers(world: dict, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    shutil.copytree(world["index"], index)
    env = {**os.environ, "COVER_ID_MAX_UPLOAD_MB": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cover_id",
            "serve",
            "--index",
            str(index),
            "--port",
            "0",
            "--workers",
            "2",
            "--api-key",
            "k1",
            "--log-level",
            "warning",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line, deadline = "", time.monotonic() + 90
        while "http://" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "serve exited early"
        url = re.search(r"http://[^/ ]+", line).group(0)
        assert url.startswith("http://127.0.0.1:")
        h = httpx.get(url + "/health", timeout=30).json()
        assert h["index"]["size"] == N_COVERS and h["workers"] == 2
        assert h["writes"]["api_key_required"] is True and h["max_upload_mb"] == 2  # env layer
        r = httpx.delete(url + "/api/refs/cover-001", headers={"X-API-Key": "k1"}, timeout=30)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15)


def test_serve_command_errors_are_one_line(world: dict) -> None:
    import socket

    out = _cli("serve", "--index", str(world["index"]), "--workers", "0")
    assert out.returncode == 2 and "--workers must be at least 1" in out.stderr
    out = _cli("serve", "--index", str(world["root"] / "missing"), "--port", "0")
    assert out.returncode == 2 and "index not found" in out.stderr and "Traceback" not in out.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = _cli("serve", "--index", str(world["index"]), "--port", str(port))
    assert out.returncode == 2 and "already in use" in out.stderr and "Traceback" not in out.stderr


def test_serve_help_is_lazy() -> None:
    code = (
        "import sys\nfrom cover_id.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ['fastapi', 'uvicorn', 'numpy', 'cv2', 'torch'] if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--api-key" in out.stdout and "LOADED []" in out.stdout, out.stdout + out.stderr


# ---- nothing of the server leaks into answers ----------------------------------------------------
def _absolute_paths(value: object) -> list[str]:
    """Every string inside a JSON value that is an absolute path on the server (API URLs aside)."""
    if isinstance(value, str):
        server_path = Path(value).is_absolute() and not value.startswith("/api/")
        return [value] if server_path or re.match(r"^[A-Za-z]:[\\/]", value) else []
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v)]
    return []


def test_health_names_no_server_path(srv: SimpleNamespace, world: dict) -> None:
    r = srv.client.get("/health")
    assert r.status_code == 200 and str(world["root"]) not in r.text
    assert not _absolute_paths(r.json()) and "path" not in r.json()["index"]
    stats = srv.client.get("/api/stats")
    assert stats.status_code == 200 and str(world["root"]) not in stats.text


def test_added_references_are_reported_relative_to_the_collection(writable: SimpleNamespace) -> None:
    c, auth = writable.client, {"X-API-Key": KEY}
    root = str(writable.index.parent)
    r = c.post("/api/refs", files=jpeg(cover_jpeg(40), "the_long_ride.jpg"), headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["filename"] == "idx.added/the-long-ride.jpg" and root not in r.text
    for answer in (
        c.get("/api/refs/the-long-ride"),
        c.get("/api/refs", params={"q": "long ride"}),
        c.post("/api/identify", files=jpeg(scene_jpeg(40, 21)[0])),
        c.post("/api/search-by-image", files=jpeg(scene_jpeg(40, 21)[0])),
    ):
        assert answer.status_code == 200, answer.text
        assert root not in answer.text and not _absolute_paths(answer.json()), answer.text
    assert c.post("/api/identify", files=jpeg(scene_jpeg(40, 21)[0])).json()["match"]["filename"] == (
        "idx.added/the-long-ride.jpg"
    )
    # an unreadable image on the server: a clear 400 that names the file, not where it lives
    (writable.index.parent / "idx.added" / "the-long-ride.jpg").write_bytes(b"not a jpeg any more")
    r = c.get("/api/refs/the-long-ride/image", params={"size": 64, "v": "x"})
    assert r.status_code == 400 and "the-long-ride.jpg" in detail(r) and root not in detail(r)
    r = c.delete("/api/refs/the-long-ride", headers=auth)
    assert r.status_code == 200 and r.json()["deleted"]["filename"] == "idx.added/the-long-ride.jpg"


def test_the_key_is_checked_before_the_upload_is_parsed(srv: SimpleNamespace) -> None:
    broken = {"Content-Type": "multipart/form-data"}  # no boundary: the form cannot be parsed
    body = b"--xyz\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\nno end boundary"
    r = srv.client.post("/api/refs", content=body, headers=broken)
    assert r.status_code == 401 and "API key" in detail(r)
    r = srv.client.post("/api/refs", content=body, headers={**broken, "X-API-Key": "wrong"})
    assert r.status_code == 401 and "wrong" in detail(r)
    r = srv.client.post("/api/refs", content=body, headers={**broken, "X-API-Key": KEY})
    assert 400 <= r.status_code < 500 and r.status_code != 401, r.text  # past the key: the body's own error


def test_internal_errors_say_nothing_more(world: dict) -> None:
    from cover_id.pipeline import Identifier
    from cover_id.server import create_app, start_in_thread

    app = create_app(Identifier.from_index(world["index"], {"threads": 1}), world["index"], {})

    def boom() -> None:
        raise RuntimeError(f"secret state in {world['root']}/idx/manifest.json")

    app.add_api_route("/boom", boom)  # a real route on the real app that fails the way a bug would
    s = start_in_thread(app)
    try:
        r = httpx.get(s.url + "/boom", timeout=30)
        assert r.status_code == 500 and r.json() == {"detail": "internal error"}
        assert "RuntimeError" not in r.text and "secret" not in r.text
    finally:
        s.stop()


def test_every_endpoint_documents_its_response(srv: SimpleNamespace) -> None:
    spec = srv.client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            ok = op["responses"].get("200") or op["responses"].get("201")
            assert ok, (method, path)
            if path.endswith("/image"):
                assert "image/jpeg" in ok["content"]
                continue
            files = [t for t in ok["content"] if t != "application/json"]
            if files:  # a download (thumbnail, CSV, zip): its media type is documented
                assert all("/" in t for t in files), (method, path)
                continue
            schema = ok["content"]["application/json"]["schema"]
            assert "$ref" in schema, (method, path, schema)  # a named pydantic model, not a bare object
            assert op["responses"]["500"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"Health", "IdentifyResult", "ReferencePage", "Stats", "ErrorBody"} <= set(spec["components"]["schemas"])
