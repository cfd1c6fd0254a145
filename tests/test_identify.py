"""identify on generated scenes (and a few real photos): rectify, retrieve, decide, report."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cover_id.evaluate.synth import make_background, make_cover, place_in_scene
from cover_id.index.build import build_index
from cover_id.pipeline import Identifier
from cover_id.rerankers.geometric import GeometricReranker
from tests.conftest import write_covers

N_COVERS = 8


def _corner_error(found: list, truth: np.ndarray) -> float:
    """Largest distance from a true corner to the nearest reported one (order-free)."""
    f = np.asarray(found, dtype=np.float32).reshape(4, 1, 2)
    return float(np.linalg.norm(f - truth.reshape(1, 4, 2), axis=2).min(axis=0).max())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """An index of 8 synthetic covers and photos of them in cluttered scenes."""
    root = tmp_path_factory.mktemp("world")
    write_covers(root / "refs", N_COVERS)
    build_index(root / "idx", refs=root / "refs", settings={"encoder": "local"}, show_progress=False)
    photos = {}
    for i, seed in [(2, 10), (5, 11)]:
        rng = np.random.default_rng(seed)
        scene, corners = place_in_scene(make_cover(i, (240, 320)), make_background(seed, (960, 720)), rng)
        path = root / f"photo_{i}.jpg"
        cv2.imwrite(str(path), scene, [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos[i] = (path, corners)
    rng = np.random.default_rng(12)
    scene, _ = place_in_scene(make_cover(77, (240, 320)), make_background(12, (960, 720)), rng)
    cv2.imwrite(str(root / "absent.jpg"), scene)
    return {"root": root, "index": root / "idx", "photos": photos, "absent": root / "absent.jpg"}


@pytest.fixture(scope="module")
def ident(world: dict) -> Identifier:
    return Identifier.from_index(world["index"], {"threads": 2})


def test_cover_in_clutter_is_rectified_and_accepted(world: dict, ident: Identifier, tmp_path: Path) -> None:
    path, corners = world["photos"][2]
    r = ident.identify(path, export_crop=tmp_path / "crop.jpg", export_debug=tmp_path / "debug.jpg")
    assert r["decision"] == "accept" and r["confident"] is True
    assert r["match"]["id"] == "cover-002" and r["match"]["filename"] == "cover_002.jpg"
    assert r["inliers"] >= 20 and r["geom_score"] > 0
    assert _corner_error(r["quad"], corners) <= 4.0  # corners within a few pixels
    assert r["image_size"] == [960, 720]
    crop = cv2.imread(str(tmp_path / "crop.jpg"))
    ref = cv2.resize(cv2.imread(str(world["root"] / "refs" / "cover_002.jpg")), crop.shape[1::-1])
    corr = np.corrcoef(crop.astype(np.float32).ravel(), ref.astype(np.float32).ravel())[0, 1]
    assert corr > 0.6  # the rectified crop looks like the reference, upright
    assert cv2.imread(str(tmp_path / "debug.jpg")).shape[:2] == (600, 800)  # drawn at processing size
    assert set(r["timings_ms"]) >= {"decode", "detect", "features", "embed", "search", "rerank", "total"}
    if r["quad_source"] == "detector":  # both views were tried; the loser is reported
        assert {r["strategy"], r["other_variant"]["strategy"]} == {"crop", "full"}
    else:  # no outline in the photo: the whole photo was the only view
        assert r["strategy"] == "full" and r["other_variant"] is None
    assert _corner_error(r["match_quad"], corners) <= 4.0  # the reference's outline, through the homography


def test_absent_cover_is_not_accepted(world: dict, ident: Identifier) -> None:
    r = ident.identify(world["absent"])
    assert r["decision"] in ("review", "reject") and r["confident"] is False


def test_threshold_overrides_and_calibration(world: dict, ident: Identifier) -> None:
    strict = Identifier(ident.store, {"accept_score": 5.0, "threads": 2})
    assert strict.threshold_source() == "settings"
    assert strict.identify(world["photos"][2][0])["decision"] != "accept"
    store = ident.store.copy()
    store.manifest["calibration"] = {"accept_score": 5.0}
    calibrated = Identifier(store, {"threads": 2})
    assert calibrated.threshold_source() == "calibration"
    assert calibrated.identify(world["photos"][2][0])["decision"] != "accept"


def test_batch_keeps_going_on_bad_files(world: dict, ident: Identifier, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(world["photos"][2][0].read_bytes()[:400])  # truncated JPEG
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = list(ident.identify_many([bad, world["photos"][5][0], empty, tmp_path / "missing.jpg"]))
    assert [o.get("decision") for o in out] == ["error", "accept", "error", "error"]
    assert "truncated or corrupt" in out[0]["error"] and "empty" in out[2]["error"]
    assert out[1]["match"]["id"] == "cover-005"


def test_array_and_bytes_inputs(world: dict, ident: Identifier) -> None:
    path = world["photos"][5][0]
    assert ident.identify(path.read_bytes())["match"]["id"] == "cover-005"
    assert ident.identify(cv2.imread(str(path)))["match"]["id"] == "cover-005"


def test_multi_finds_every_cover(world: dict, ident: Identifier, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    left, _ = place_in_scene(make_cover(1, (240, 320)), make_background(20, (640, 720)), rng, scale_range=(0.6, 0.75))
    right, _ = place_in_scene(make_cover(6, (240, 320)), make_background(21, (640, 720)), rng, scale_range=(0.6, 0.75))
    photo = tmp_path / "two.jpg"
    cv2.imwrite(str(photo), np.hstack([left, right]))
    r = ident.identify(photo, multi=True)
    assert r["multi"] is True
    found = {c["match"]["id"] for c in r["covers"] if c["decision"] == "accept"}
    assert found == {"cover-001", "cover-006"}
    assert all(len(c["quad"]) == 4 for c in r["covers"])


def test_cli_json_lines_csv_and_exit_codes(world: dict, tmp_path: Path) -> None:
    photos_dir = tmp_path / "photos"
    photos_dir.mkdir()
    for p, _ in world["photos"].values():
        (photos_dir / p.name).write_bytes(p.read_bytes())
    (photos_dir / "zz_broken.jpg").write_bytes(b"broken")
    cmd = [
        sys.executable,
        "-m",
        "cover_id",
        "identify",
        str(world["absent"]),
        str(photos_dir),
        "--index",
        str(world["index"]),
        "--json",
        "--csv",
        str(tmp_path / "out.csv"),
        "--export-debug",
        str(tmp_path / "dbg"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr  # one bad photo in the batch: reported, exit 1
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [Path(x["input"]).name for x in lines] == ["absent.jpg", "photo_2.jpg", "photo_5.jpg", "zz_broken.jpg"]
    assert lines[1]["decision"] == "accept" and lines[1]["match"]["id"] == "cover-002"
    for key in [
        "input",
        "decision",
        "confident",
        "strategy",
        "cosine",
        "geom_score",
        "inliers",
        "match",
        "alternatives",
        "other_variant",
        "exports",
        "timings_ms",
    ]:
        assert key in lines[1]
    assert "error" in lines[3]
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [r["decision"] for r in rows] == [lines[0]["decision"], "accept", "accept", "error"]
    assert (tmp_path / "dbg" / "photo_2_debug.jpg").is_file()
    human = subprocess.run(
        [sys.executable, "-m", "cover_id", "identify", str(world["photos"][2][0]), "--index", str(world["index"])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert human.returncode == 0 and "ACCEPT" in human.stdout and "Cover 002" in human.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "cover_id", "identify", str(tmp_path / "nope.jpg"), "--index", str(world["index"])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode == 2 and "no such file" in missing.stdout + missing.stderr


def test_index_built_with_other_encoder_is_reported(world: dict, tmp_path: Path) -> None:
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(world["index"], idx)
    m = json.loads((idx / "manifest.json").read_text())
    m["encoder"]["name"] = "not-installed"
    (idx / "manifest.json").write_text(json.dumps(m))
    out = subprocess.run(
        [sys.executable, "-m", "cover_id", "identify", str(world["absent"]), "--index", str(idx)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 2 and "unknown encoder 'not-installed'" in out.stderr


@pytest.mark.slow
def test_real_dvd_photos(dvd: Path, tmp_path_factory) -> None:
    root = tmp_path_factory.mktemp("dvd")
    refs = root / "refs"
    refs.mkdir()
    for i in range(1, 21):
        (refs / f"{i:03d}.jpg").symlink_to(dvd / "references" / f"{i:03d}.jpg")
    build_index(root / "idx", refs=refs, settings={"encoder": "local"}, show_progress=False)
    ident = Identifier.from_index(root / "idx", {"threads": 2})
    for n in (1, 7, 14):
        r = ident.identify(dvd / "photos" / f"e63_{n:03d}.jpg")
        assert r["match"]["id"] == f"{n:03d}" and r["decision"] == "accept", (n, r["decision"], r["geom_score"])
    store = ident.store.copy()
    store.remove("007")
    ident.store = store
    assert ident.identify(dvd / "photos" / "e63_007.jpg")["decision"] != "accept"


def test_second_look_finds_a_small_cover_in_a_large_photo(world: dict, ident: Identifier, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    scene, _ = place_in_scene(
        make_cover(3, (480, 640)), make_background(42, (4000, 3000)), rng, scale_range=(0.08, 0.1), max_tilt=0.1
    )
    photo = tmp_path / "small_cover_12mp.jpg"
    Image.fromarray(scene[:, :, ::-1]).save(photo, quality=90)
    first_only = Identifier(ident.store, {"threads": 2, "second_look": False}).identify(photo)
    assert first_only["decision"] != "accept"  # too few keypoints at the usual size
    r = ident.identify(photo)
    assert r["decision"] == "accept" and r["match"]["id"] == "cover-003"
    assert "second_look" in r["timings_ms"] and r["image_size"] == [4000, 3000]


def test_clip_encoder_path_end_to_end(world: dict, tmp_path: Path) -> None:
    """A CLIP index (random weights) embeds the rectified crop and the photo as images."""
    build_index(
        tmp_path / "clip",
        refs=world["root"] / "refs",
        settings={"encoder": "clip", "pretrained": None},
        show_progress=False,
    )
    ident = Identifier.from_index(tmp_path / "clip", {"threads": 2})
    assert not ident.encoder.supports_features
    r = ident.identify(world["photos"][5][0])
    assert r["decision"] == "accept" and r["match"]["id"] == "cover-005"  # votes + geometry carry it
    assert -1.0 <= r["cosine"] <= 1.0 and r["timings_ms"]["embed"] > 0
    hits = ident.search_by_text("a cover", k=3)
    assert len(hits) == 3 and all("cosine" in h for h in hits)


def _same_answer(r: dict) -> dict:
    """An answer without what may differ between calls: the label and the timings."""
    return {k: v for k, v in r.items() if k not in ("input", "timings_ms")}


def test_path_bytes_and_array_give_the_same_answer(world: dict, ident: Identifier, tmp_path: Path) -> None:
    """Arrays are shrunk to max_side and get the second look like files (they used to skip both)."""
    rng = np.random.default_rng(31)
    scene, _ = place_in_scene(make_cover(4, (240, 320)), make_background(31, (1200, 900)), rng)
    photo = tmp_path / "large.png"  # lossless: the file decodes to exactly the array
    cv2.imwrite(str(photo), scene)
    by_path = ident.identify(photo)
    by_bytes = ident.identify(photo.read_bytes())
    by_array = ident.identify(cv2.imread(str(photo)))
    assert by_path["match"]["id"] == "cover-004" and by_path["image_size"] == [1200, 900]
    assert _same_answer(by_path) == _same_answer(by_bytes) == _same_answer(by_array)
    absent = cv2.imread(str(world["absent"]))
    big = cv2.resize(absent, (1440, 1080))
    (tmp_path / "absent_big.png").write_bytes(cv2.imencode(".png", big)[1].tobytes())
    r_array, r_path = ident.identify(big), ident.identify(tmp_path / "absent_big.png")
    assert "second_look" in r_array["timings_ms"] and "second_look" in r_path["timings_ms"]
    assert _same_answer(r_array) == _same_answer(r_path)


def test_answer_records_the_preset_and_settings(world: dict) -> None:
    from cover_id.config import Settings

    ident = Identifier.from_index(world["index"], Settings.from_mapping({"threads": 2}, preset="fast"))
    r = ident.identify(world["photos"][2][0])
    s = r["settings"]
    assert s["preset"] == "fast" and s["top_k"] == 15 and s["second_look"] is False
    assert s["reranker"] == "geometric" and s["thresholds"]["source"] == "defaults"
    assert s["thresholds"]["accept_score"] == ident.thresholds.accept_score


def test_rank_fusion_rewards_agreement() -> None:
    from cover_id.identify.retrieve import fuse

    assert fuse([[1, 2, 3, 4], [4, 2, 9, 8]], 3) == [2, 4, 1]  # second in both lists beats first in one
    assert fuse([[1, 2, 3], [3, 2, 1]], 3) == [1, 3, 2]  # equal scores: first seen first
    assert fuse([[5, 6], [7, 5]], 2) == [5, 7]  # 5 is in both lists; 7 ranks first somewhere, 6 only second
    assert fuse([[1, 2, 3], []], 2) == [1, 2]
    assert fuse([], 5) == []
    assert fuse([[9, 8, 7, 6]], 2) == [9, 8]  # one list: its own order, cut at the limit


def _match(row: int, score: float, shift: float | None = 0.0, inliers: int = 30) -> "object":
    from cover_id.rerankers.base import GeomMatch

    h = None if shift is None else np.array([[1, 0, shift], [0, 1, 0], [0, 0, 1]], np.float64)
    return GeomMatch(ref_index=row, score=score, inliers=inliers, sane=True, homography=h, detail={"explained": 1.0})


def test_rival_is_only_a_candidate_for_the_same_place(ident: Identifier) -> None:
    from cover_id.identify.decide import rival

    store = ident.store
    best = _match(0, 0.9)
    elsewhere = _match(1, 0.8, shift=5000.0)  # another cover far to the right: no doubt about the first
    same_place = _match(2, 0.5)
    assert rival(store, best, [elsewhere, same_place]) is same_place
    assert rival(store, best, [elsewhere]) is None
    assert rival(store, best, [_match(3, 0.4, shift=None)]).ref_index == 3  # no outline: be cautious
    assert rival(None, best, [elsewhere]) is elsewhere  # without the collection, the runner-up
    assert rival(store, None, []) is None


def test_choose_orders_views_and_decides(ident: Identifier) -> None:
    from cover_id.identify.decide import ThresholdPolicy, Thresholds, choose

    store = ident.store
    crop = ([_match(0, 0.8), _match(1, 0.78, shift=5000.0)], {0: 0.5, 1: 0.2})
    full = ([_match(2, 0.5), _match(0, 0.45)], {2: 0.3, 0: 0.5})
    ordered, decision = choose(store, {"full": full, "crop": crop}, Thresholds())
    assert [name for name, _ in ordered] == ["crop", "full"] and decision == "accept"  # the rival is elsewhere
    ordered, decision = choose(store, {"full": full, "crop": crop}, ThresholdPolicy(), exclude=0)
    assert ordered[0][1].ranked[0].ref_index == 1 and decision == "accept"  # cover 0 withheld: cover 1 leads
    tie = {"full": ([_match(4, 0.6)], {}), "crop": ([_match(5, 0.6)], {})}
    assert choose(store, tie, Thresholds())[0][0][0] == "crop"  # equal evidence: the rectified view wins
    ordered, decision = choose(store, {"full": ([], {}), "crop": ([], {})}, Thresholds())
    assert decision == "reject"
    close = {"crop": ([_match(0, 0.8), _match(1, 0.75)], {})}  # same place, small margin
    assert choose(store, close, Thresholds())[1] == "review"
    assert choose(store, close, Thresholds(accept_margin=0.01))[1] == "accept"


def _answer(r: dict) -> str:
    """The whole JSON answer except what says how it was run (timings, thread settings)."""
    return json.dumps({k: v for k, v in r.items() if k not in ("timings_ms", "settings")}, sort_keys=True, default=str)


def test_steps_side_by_side_give_the_answer_of_one_thread(world: dict, tmp_path: Path) -> None:
    """Detection beside RootSIFT, votes beside the embedding, early verification: the same JSON as one thread."""
    rng = np.random.default_rng(5)
    left, _ = place_in_scene(make_cover(1, (240, 320)), make_background(20, (640, 720)), rng, scale_range=(0.6, 0.75))
    right, _ = place_in_scene(make_cover(6, (240, 320)), make_background(21, (640, 720)), rng, scale_range=(0.6, 0.75))
    two = tmp_path / "two.jpg"
    cv2.imwrite(str(two), np.hstack([left, right]))
    one = Identifier.from_index(world["index"], {"threads": 1})
    both = Identifier.from_index(world["index"], {"threads": 2})
    photos = [world["photos"][2][0], world["photos"][5][0], world["absent"]]
    for photo in photos:
        a, b = one.identify(photo), both.identify(photo)
        assert _answer(a) == _answer(b)
        assert a["timings_ms"]["detect"] > 0 and b["timings_ms"]["detect"] > 0  # each step is still timed
    assert _answer(one.identify(two, multi=True)) == _answer(both.identify(two, multi=True))
    assert one.identify(world["photos"][2][0])["match"]["id"] == "cover-002"


class _Counting(GeometricReranker):
    """The geometric re-ranker, counting which references it verifies."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def match_views(self, qdesc, views, ref, ref_index):  # type: ignore[no-untyped-def]
        self.calls.append(ref_index)
        return super().match_views(qdesc, views, ref, ref_index)


def test_verifier_verifies_each_reference_once_whenever_started(world: dict, ident: Identifier) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from cover_id.identify.retrieve import likely
    from cover_id.identify.verify import Verifier, verify
    from cover_id.identify.views import make_views, photo_features

    image, _ = ident.read(world["photos"][5][0])
    full, views = make_views(image, photo_features(image), None)
    store = ident.store
    rows = [5, 1, 3, 7]
    cosines = np.linspace(0.9, 0.1, len(views) * len(rows)).reshape(len(views), len(rows)).astype(np.float32)
    counting = _Counting()
    with ThreadPoolExecutor(2) as pool:
        plain = verify(GeometricReranker(), pool, store, full, views, rows, cosines)
        early = Verifier(counting, pool, store, full, views)
        early.start([7, 5, 0])  # 0 is not on the shortlist in the end: verified, never reported
        got = early.candidates(rows, cosines)
    assert sorted(counting.calls) == [0, 1, 3, 5, 7]
    for name in plain:
        assert [(m.ref_index, m.score, m.inliers) for m in got[name].ranked] == [
            (m.ref_index, m.score, m.inliers) for m in plain[name].ranked
        ]
        assert got[name].cosines == plain[name].cosines and 0 not in got[name].cosines
    assert got["full"].ranked[0].ref_index == 5
    assert likely([[(4, 0.9), (2, 0.8), (9, 0.1)], [(2, 0.7), (6, 0.6)]]) == [4, 2, 6]
    assert likely([[(4, 0.9)], []], n=1) == [4]


class _CountingReads(Identifier):
    """An identifier that records the size every read of a photo asked for."""

    reads: list

    def read(self, source, max_side=None):  # type: ignore[no-untyped-def]
        self.reads.append(max_side)
        return super().read(source, max_side)


def test_a_photo_too_small_for_a_closer_look_is_not_decoded_again(
    world: dict, ident: Identifier, tmp_path: Path
) -> None:
    counting = _CountingReads(ident.store, {"threads": 2})
    counting.reads = []
    r = counting.identify(world["absent"])  # 960 x 720, not accepted: 1600 px would give it no more pixels
    assert r["decision"] != "accept" and "second_look" in r["timings_ms"]
    assert counting.reads == [None]
    assert _answer(r) == _answer(ident.identify(world["absent"]))
    big = tmp_path / "absent_big.jpg"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(world["absent"])), (1440, 1080)))
    counting.reads = []
    counting.identify(big)
    assert counting.reads == [None, 1600]  # larger: looked at again, closer


def test_pool_workers_get_the_thread_budget(world: dict) -> None:
    """OpenMP keeps its thread count per thread: the pool's workers must be given the budget too."""
    import faiss

    ident = Identifier.from_index(world["index"], {"threads": 1})
    assert ident._pool().submit(faiss.omp_get_max_threads).result() == 1


def test_only_the_strongest_keypoints_vote(world: dict, ident: Identifier, monkeypatch: pytest.MonkeyPatch) -> None:
    from cover_id.features import strongest
    from cover_id.identify import retrieve
    from cover_id.identify.views import make_views, photo_features

    store = ident.store
    assert store.has_voter
    image, _ = ident.read(world["photos"][5][0])
    full, views = make_views(image, photo_features(image), None)
    every = store.voter().shortlist(full.feats, top=10)
    n = 60
    assert len(full.feats) > n and every[0][1] > n  # with every keypoint voting, the best has more votes than n
    monkeypatch.setattr(retrieve, "VOTE_KEYPOINTS", n)
    got = retrieve.votes(store, views, 10)
    assert got == store.voter().shortlist(strongest(full.feats, n), top=10)
    assert got[0][1] <= n and got[0][0] == every[0][0]  # one vote per keypoint and reference: the same winner


def test_content_boxes_are_remembered_by_their_keypoints(monkeypatch: pytest.MonkeyPatch) -> None:
    from cover_id.features import Features
    from cover_id.identify import views

    rng = np.random.default_rng(0)
    xy = (rng.random((200, 2)) * [300, 400] + [50, 20]).astype(np.float32)
    feats = Features(xy, np.zeros((200, 128), np.uint8), (400, 440))
    monkeypatch.setattr(views, "_boxes", {})
    box = views.content_box(feats)
    assert box == views._content_box(feats) and len(views._boxes) == 1
    assert views.content_box(Features(xy.copy(), feats.desc, feats.size)) == box and len(views._boxes) == 1
    # other keypoints, or the same keypoints in an image of another size: another box
    moved = Features(xy + 30, feats.desc, feats.size)
    assert views.content_box(moved) == views._content_box(moved) != box
    wider = Features(xy, feats.desc, (800, 440))
    assert views.content_box(wider) == views._content_box(wider) != box
    assert len(views._boxes) == 3
    monkeypatch.setattr(views, "BOXES_KEPT", 3)  # bounded: full, it starts again
    views.content_box(Features(xy + 1, feats.desc, feats.size))
    assert len(views._boxes) == 1


def test_a_photo_not_accepted_is_looked_at_wider_verifying_each_reference_once(world: dict, ident: Identifier) -> None:
    from cover_id.identify.recipe import WIDER_VERIFY
    from cover_id.identify.retrieve import LIKELY

    idf = Identifier(ident.store, {"threads": 2, "top_k": 2, "rerank_k": 2, "second_look": False})
    counting = _Counting()
    idf.reranker = counting
    r = idf.identify(world["absent"])
    assert r["decision"] != "accept" and r["timings_ms"]["wider_look"] > 0
    assert len(counting.calls) == len(set(counting.calls))  # the first look's candidates are not verified again
    # more than the first look's shortlist, within the wider one (and the likeliest vector hits, started early)
    assert 2 < len(counting.calls) <= 2 * WIDER_VERIFY + 2 * LIKELY
    r = idf.identify(world["photos"][5][0])
    assert r["decision"] == "accept" and "wider_look" not in r["timings_ms"]  # accepted at once: no wider look
