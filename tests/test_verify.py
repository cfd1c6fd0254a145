"""verify: self-test under photo conditions, margins, labelled photos, calibration, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cover_id.errors import CoverIdError
from cover_id.evaluate.calibrate import calibrate
from cover_id.evaluate.labelled import read_truth
from cover_id.evaluate.photos import photo_view
from cover_id.evaluate.probe import Probe
from cover_id.evaluate.report import VerifyRun, run_verify
from cover_id.evaluate.synth import make_cover
from cover_id.index.build import build_index
from cover_id.index.store import IndexStore
from cover_id.pipeline import Identifier
from tests.conftest import write_covers

N_COVERS = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """8 synthetic covers, an index of them, and labelled photos (6 of covers, 2 of absent ones)."""
    root = tmp_path_factory.mktemp("verify")
    write_covers(root / "refs", N_COVERS)
    build_index(root / "idx", refs=root / "refs", settings={"encoder": "local", "threads": 2}, show_progress=False)
    shots = root / "shots"
    shots.mkdir()
    rows = []
    forms = ["refs/cover_{i:03d}.jpg", "cover-{i:03d}", "cover_{i:03d}.jpg"]  # path, id, stored filename
    for n, i in enumerate([0, 1, 3, 4, 6, 7]):
        img = photo_view(make_cover(i, (240, 320)), np.random.default_rng([99, i]), strength=0.8)
        cv2.imwrite(str(shots / f"p{i}.jpg"), img)
        rows.append(f"shots/p{i}.jpg,{forms[n % 3].format(i=i)}")
    for j in (90, 91):
        img = photo_view(make_cover(j, (240, 320)), np.random.default_rng([99, j]), strength=0.8)
        cv2.imwrite(str(shots / f"absent{j}.jpg"), img)
        rows.append(f"shots/absent{j}.jpg,")
    (root / "truth.csv").write_text("photo,reference\n" + "\n".join(rows) + "\n")
    return {"root": root, "index": root / "idx", "csv": root / "truth.csv"}


def test_photo_view_is_a_seeded_photo_not_the_reference() -> None:
    cover = make_cover(3, (240, 320))
    a = photo_view(cover, np.random.default_rng(1))
    b = photo_view(cover, np.random.default_rng(1))
    c = photo_view(cover, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.ndim == 3 and max(a.shape[:2]) > max(cover.shape[:2])  # cover inside a scene


def test_read_truth_matches_paths_ids_and_filenames(world: dict, tmp_path: Path) -> None:
    store = IndexStore.open(world["index"])
    rows = read_truth(world["csv"], store)
    got = [(p.name, store.records[i]["id"] if i is not None else None) for p, i, _ in rows]
    assert got[:3] == [("p0.jpg", "cover-000"), ("p1.jpg", "cover-001"), ("p3.jpg", "cover-003")]
    assert got[-2:] == [("absent90.jpg", None), ("absent91.jpg", None)]
    assert all(p.is_file() for p, _, _ in rows)
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,reference\nx.jpg,nope.jpg\n")
    with pytest.raises(CoverIdError, match="not in the index.*nope.jpg"):
        read_truth(bad, store)
    bad.write_text("image,label\nx.jpg,a\n")
    with pytest.raises(CoverIdError, match="photo,reference"):
        read_truth(bad, store)


def _probe(truth: int | None, scores: dict[int, float], inliers: int = 40) -> Probe:
    from cover_id.rerankers.geometric import GeomMatch

    ranked = [GeomMatch(ref_index=i, inliers=inliers if s > 0 else 3, score=s, sane=s > 0) for i, s in scores.items()]
    ranked.sort(key=lambda m: -m.score)
    sims = np.full(10, 0.5, np.float32)
    return Probe("p", truth, {"strategy": "full", "decision": "accept"}, sims, {"full": ranked})


def test_calibration_sits_above_the_best_wrong_candidates() -> None:
    from cover_id.rerankers.geometric import Thresholds

    probes = [_probe(i, {i: 0.55 + 0.03 * i, (i + 1) % 10: 0.05 * (i % 4)}) for i in range(8)]
    probes.append(_probe(None, {9: 0.3}))  # a photo of something not in the collection
    cal = calibrate(probes, Thresholds(), target_far=0.0)
    assert cal["worst_negative"] == pytest.approx(0.3)
    assert cal["accept_score"] >= 0.3 + 0.03 and cal["review_score"] <= cal["accept_score"]
    assert cal["after"]["false_accepts"] == 0 and cal["after"]["accepted_correct"] == 1.0
    assert cal["n_photos"] == 9 and cal["n_absent"] == 1
    loose = calibrate(probes, Thresholds(), target_far=0.2)  # 17 trials: 3 false accepts allowed
    assert loose["accept_score"] < cal["accept_score"]


def test_failures_list_every_photo_not_accepted_correctly(world: dict) -> None:
    from cover_id.evaluate.stats import failures

    store = IndexStore.open(world["index"])
    wrong = _probe(0, {1: 0.8, 0: 0.4})  # the wrong reference on top, accepted
    absent = _probe(None, {2: 0.7})  # not in the collection, accepted
    right = _probe(3, {3: 0.9, 4: 0.1})  # accepted and correct: not a failure
    unsure = _probe(5, {5: 0.3, 6: 0.2})
    unsure.result["decision"] = "review"
    got = failures([wrong, absent, right, unsure], store)
    assert [f["reason"] for f in got] == [
        "wrong reference accepted",
        "accepted although not in the collection",
        "right reference, not confident",
    ]
    assert {"reason", "best_wrong_ref"} <= set(got[0])
    assert got[0]["best_wrong_ref"]["id"] == "cover-001" and got[0]["truth_ref"]["id"] == "cover-000"
    assert got[1]["truth_ref"] is None and got[2]["best_wrong_ref"]["id"] == "cover-006"


@pytest.fixture(scope="module")
def verify_run(world: dict) -> VerifyRun:
    return run_verify(
        world["index"],
        queries=world["csv"],
        samples=0,
        views=1,
        seed=0,
        do_calibrate=True,
        settings={"threads": 2},
    )


@pytest.fixture(scope="module")
def verified(verify_run: VerifyRun) -> dict:
    return verify_run.report


def test_self_test_margins_and_pairs(verified: dict) -> None:
    st = verified["self_test"]
    assert st["n"] == N_COVERS and st["references_tested"] == N_COVERS
    assert st["top1"] >= 0.75 and 0 <= st["embedding_top1"] <= 1
    g = verified["margins"]["geometric"]
    assert g["n"] == N_COVERS and g["p5"] <= g["median"] <= g["max"]
    assert verified["margins"]["guidance"]["level"] in ("strong", "medium", "weak")
    assert verified["margins"]["guidance"]["advice"]
    pairs = verified["confusable_pairs"]["by_embedding"]
    assert pairs and pairs[0]["cosine"] >= pairs[-1]["cosine"] and pairs[0]["a"]["id"] != pairs[0]["b"]["id"]


def test_labelled_photos_and_calibration_round_trip(world: dict, verified: dict) -> None:
    ph = verified["photos"]
    assert (ph["n"], ph["n_in_collection"], ph["n_absent"]) == (8, 6, 2)
    assert ph["top1"] >= 0.8 and ph["top5"] >= ph["top1"] and ph["false_accept_rate"] == 0
    # every photo not accepted correctly (or, if absent, accepted) is listed, with its reason and best wrong match
    expected = round(ph["n_in_collection"] * (1 - ph["accepted_correct"])) + round(
        ph["n_absent"] * ph.get("absent_accepted", 0)
    )
    assert len(ph["failures"]) == expected
    assert all({"reason", "best_wrong_ref", "truth_ref"} <= set(f) for f in ph["failures"])
    cal = verified["calibration"]
    stored = IndexStore.open(world["index"]).manifest["calibration"]
    assert stored["accept_score"] == cal["accept_score"] and stored["review_score"] == cal["review_score"]
    assert stored["n_photos"] == 8 and stored["target_far"] == 0 and "date" in stored
    assert cal["accept_score"] > cal["worst_negative"]
    ident = Identifier.from_index(world["index"], {"threads": 2})
    assert ident.threshold_source() == "calibration"
    assert ident.thresholds.accept_score == cal["accept_score"]
    json.dumps(verified)  # JSON-able: no private objects inside
    assert not [k for k in verified if k.startswith("_")]


def test_html_report_is_self_contained(world: dict, verify_run: VerifyRun, tmp_path: Path) -> None:
    from cover_id.evaluate.html import write_report

    out = tmp_path / "r.html"
    write_report(out, verify_run.report, verify_run.store, verify_run.probes)
    page = out.read_text()
    assert page.count("<svg") >= 3 and "data:image/jpeg;base64," in page
    assert 'src="http' not in page and "<script" not in page and "<link" not in page
    assert "Confusable pairs" in page and "Worst confusions" in page


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, timeout=120)


def test_cli_json_and_user_errors(world: dict) -> None:
    out = _cli("verify", "--index", str(world["index"]), "--samples", "2", "--pairs", "3", "--json", "--threads", "2")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["self_test"]["n"] == 2 and len(r["confusable_pairs"]["by_embedding"]) <= 3
    out = _cli("verify", "--index", str(world["index"]), "--calibrate")
    assert out.returncode == 2 and "--queries" in out.stderr and "Traceback" not in out.stderr
