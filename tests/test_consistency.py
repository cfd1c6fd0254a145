"""The consistency step: appearance through the homography, variant twins, other editions, also_seen."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cover_id.evaluate.synth import make_background, make_cover, place_in_scene
from cover_id.identify import appearance
from cover_id.identify.consistency import Evidence
from cover_id.identify.prominence import prominence
from cover_id.index.build import build_index
from cover_id.pipeline import Identifier

SIZE = (300, 420)  # w, h of the generated cards


def _card(seed: int, stamp: tuple[int, int, int] = (40, 40, 40), code: str = "LOCH-EN001") -> np.ndarray:
    """A textured card with a set code and a rarity stamp (what variants change)."""
    card = make_cover(seed, SIZE)
    cv2.rectangle(card, (10, SIZE[1] - 60), (SIZE[0] - 10, SIZE[1] - 10), (200, 220, 230), -1)
    cv2.putText(card, code, (20, SIZE[1] - 28), cv2.FONT_HERSHEY_DUPLEX, 0.6, (10, 10, 10), 1, cv2.LINE_AA)
    cv2.rectangle(card, (SIZE[0] - 50, SIZE[1] - 50), (SIZE[0] - 20, SIZE[1] - 20), stamp, -1)
    return card


def _photo(face: np.ndarray, seed: int) -> np.ndarray:
    scene, _ = place_in_scene(
        face, make_background(seed, (960, 720)), np.random.default_rng(seed), scale_range=(0.75, 0.85)
    )
    return scene


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)


def test_appearance_agrees_with_itself_and_not_with_a_new_title_block() -> None:
    card = _card(3)
    photo = cv2.warpPerspective(card, _shift(40, 30), (400, 500))
    box = (0.0, 0.0, float(SIZE[0]), float(SIZE[1]))
    same = appearance.compare(photo, _shift(40, 30), appearance.gray(card), box)
    assert same.agree >= 0.95 and same.worst_band >= 0.9
    edition = card.copy()
    edition[int(SIZE[1] * 0.6) :] = make_cover(99, (SIZE[0], SIZE[1] - int(SIZE[1] * 0.6)))
    other = appearance.compare(
        cv2.warpPerspective(edition, _shift(40, 30), (400, 500)), _shift(40, 30), appearance.gray(card), box
    )
    assert other.worst_band <= 0.5 and other.agree < same.agree - 0.1


def test_twins_are_told_apart_where_they_differ() -> None:
    first, second = _card(5, stamp=(40, 40, 40)), _card(5, stamp=(230, 120, 210), code="RA01-EN001")
    box = (0.0, 0.0, float(SIZE[0]), float(SIZE[1]))
    for face, expected in ((first, 0.0), (second, 1.0)):
        photo = cv2.GaussianBlur(cv2.warpPerspective(face, _shift(20, 10), (360, 460)), (0, 0), 0.8)
        verdict = appearance.twins(photo, _shift(20, 10), first, second, np.eye(3), box)
        assert 0 < verdict.differing < 0.1  # only the set code and the stamp differ
        assert abs(verdict.blend - expected) < 0.25
    identical = appearance.twins(first, np.eye(3), first, first.copy(), np.eye(3), box)
    assert identical.differing == 0 and np.isnan(identical.blend)  # nothing to tell them apart by


def test_dead_band_flags_a_replaced_region_only() -> None:
    ncc = np.full((8, 6), 0.9, np.float32)
    keypoints = np.full((8, 6), 10, np.int32)
    inliers = np.full((8, 6), 4, np.int32)
    reference = np.full((8, 6), 10, np.int32)
    visible = np.ones((8, 6), bool)
    assert Evidence(ncc, keypoints, inliers, reference, visible).dead_band() == (0.0, 0.0, 0.0, 0.0)
    ncc[6:], inliers[6:] = 0.0, 0  # the bottom quarter: own keypoints, no inlier, other pixels
    contradicted, disagree, expected, texture = Evidence(ncc, keypoints, inliers, reference, visible).dead_band()
    assert contradicted == 1.0 and disagree == 1.0 and expected == pytest.approx(4 * 36 * 12 / 48)
    assert texture == pytest.approx(1.0)  # as many keypoints of its own as the reference has there
    keypoints[6:] = 0  # no keypoints of its own: no contradiction, but the pixels still disagree
    assert Evidence(ncc, keypoints, inliers, reference, visible).dead_band()[:2] == (0.0, 1.0)
    ncc[6:] = np.nan  # washed out by glare: no evidence either way
    assert Evidence(ncc, keypoints, inliers, reference, visible).dead_band()[:2] == (0.0, 0.0)
    ncc[6:], inliers[6:] = 0.0, 1  # a single inlier: not a dead band
    assert Evidence(ncc, keypoints, inliers, reference, visible).dead_band() == (0.0, 0.0, 0.0, 0.0)


def test_a_silent_band_with_texture_of_its_own_is_another_edition() -> None:
    """A band expected to hold many inliers and holding none, where the photo has its own keypoints and
    part of the pixels disagree, is a region of the cover the match does not explain (a new title block);
    the same band without keypoints of its own (glare, a dark corner) or expecting few inliers is not."""
    from cover_id.identify.consistency import SILENT_EXPECTED, _badness

    ncc = np.full((8, 6), 0.9, np.float32)
    keypoints = np.full((8, 6), 10, np.int32)
    inliers = np.full((8, 6), 4, np.int32)
    reference = np.full((8, 6), 10, np.int32)
    visible = np.ones((8, 6), bool)
    inliers[6:] = 0
    ncc[6:, :3] = 0.0  # half the band unlike the reference: below the dead band's 65 %
    band = Evidence(ncc, keypoints, inliers, reference, visible).dead_band()
    assert band[2] >= SILENT_EXPECTED and band[3] == pytest.approx(1.0) and _badness(band) >= 1.0
    keypoints[6:] = 1  # hardly a keypoint of its own there: glare or shadow, no evidence of another edition
    assert _badness(Evidence(ncc, keypoints, inliers, reference, visible).dead_band()) < 1.0
    keypoints[6:], inliers[:6] = 10, 1  # a weak match expects few inliers there: zero is no surprise
    assert _badness(Evidence(ncc, keypoints, inliers, reference, visible).dead_band()) < 1.0


def test_twins_are_told_apart_under_uneven_light_over_a_large_differing_region() -> None:
    """A foil twin differs over the whole artwork; a sleeve's glare washing out part of it (not saturated)
    is lighting that one gain and offset over the whole artwork cannot follow: it is fitted piece by piece."""
    base = _card(7, stamp=(40, 40, 40))
    yy, xx = np.mgrid[0 : base.shape[0], 0 : base.shape[1]]
    foil = base.astype(np.float32)
    sheen = np.stack([np.sin((xx + yy) / 4.0 + c) * 40 for c in (0.0, 2.0, 4.0)], axis=2)
    art = (slice(60, 330), slice(20, base.shape[1] - 20))
    foil[art] += sheen[art]
    foil = np.clip(foil, 0, 255).astype(np.uint8)
    box = (0.0, 0.0, float(SIZE[0]), float(SIZE[1]))
    for face, expected in ((base, 0.0), (foil, 1.0)):
        lit = face.astype(np.float32) * 0.92 + 20
        lit[:, 110:] = lit[:, 110:] * 0.35 + 140  # washed out over two thirds of the card
        photo = np.clip(lit, 0, 255).astype(np.uint8)
        photo = cv2.GaussianBlur(cv2.warpPerspective(photo, _shift(20, 10), (360, 460)), (0, 0), 0.8)
        verdict = appearance.twins(photo, _shift(20, 10), base, foil, np.eye(3), box)
        assert verdict.differing > 0.2
        assert abs(verdict.blend - expected) < 0.15


def test_prominence_prefers_large_central_and_complete() -> None:
    size = (800, 600)
    central = np.float32([[250, 150], [550, 150], [550, 450], [250, 450]])
    corner = central - np.float32([240, 140])
    cut = central + np.float32([400, 0])  # half outside the frame
    assert prominence(central, size) > prominence(corner, size) > 0
    assert prominence(central, size) > prominence(cut, size)


@pytest.fixture(scope="module")
def twins_world(tmp_path_factory) -> dict:
    """A collection of cards sharing nothing but layout, plus one pair of variant twins."""
    root = tmp_path_factory.mktemp("twins")
    refs = root / "refs"
    refs.mkdir()
    faces = {f"card_{i}": _card(i) for i in range(1, 5)}
    faces["card_1_v1"] = _card(1, stamp=(230, 120, 210), code="RA01-EN001")
    for name, face in faces.items():
        cv2.imwrite(str(refs / f"{name}.png"), face)
    build_index(root / "idx", refs=refs, settings={"encoder": "local"}, show_progress=False)
    return {"root": root, "faces": faces, "ident": Identifier.from_index(root / "idx", {"threads": 2})}


def test_variant_twins_are_resolved_by_the_differing_region(twins_world: dict) -> None:
    ident, faces = twins_world["ident"], twins_world["faces"]
    for name, seed in (("card_1", 31), ("card_1_v1", 32)):
        r = ident.identify(_photo(faces[name], seed))
        assert r["match"]["id"] == name.replace("_", "-")
        assert r["decision"] == "accept" and r["reason"] == "variant_verified"
        assert r["twin"]["id"] in {"card-1", "card-1-v1"} and r["twin"]["id"] != r["match"]["id"]
    r = ident.identify(_photo(faces["card_2"], 33))  # no twin: nothing to resolve
    assert r["decision"] == "accept" and r["reason"] is None and r["twin"] is None


def test_other_covers_in_the_photo_are_also_seen(twins_world: dict, tmp_path: Path) -> None:
    ident, faces = twins_world["ident"], twins_world["faces"]
    big = cv2.resize(faces["card_3"], None, fx=1.6, fy=1.6)
    scene = make_background(40, (1100, 800))
    scene[60 : 60 + big.shape[0], 80 : 80 + big.shape[1]] = big
    small = cv2.resize(faces["card_4"], None, fx=0.9, fy=0.9)
    scene[300 : 300 + small.shape[0], 700 : 700 + small.shape[1]] = small
    r = ident.identify(scene)
    assert r["decision"] == "accept" and r["match"]["id"] == "card-3"  # the larger cover is the answer
    assert [s["id"] for s in r["also_seen"]] == ["card-4"] and r["also_seen"][0]["decision"] == "accept"
    assert len(r["also_seen"][0]["match_quad"]) == 4
    multi = ident.identify(scene, multi=True)
    assert {c["match"]["id"] for c in multi["covers"]} >= {"card-3", "card-4"} and "also_seen" not in multi
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), scene)
    text = subprocess.run(
        [sys.executable, "-m", "cover_id", "identify", str(photo), "--index", str(twins_world["root"] / "idx")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ACCEPT" in text and "also seen: Card 4 (card-4), accept" in text


def _relaid_out(face: np.ndarray, seed: int) -> np.ndarray:
    """Another edition of ``face``: the top of its artwork, smaller, at the bottom of a new cover with a title block."""
    h, w = face.shape[:2]
    out = np.empty_like(face)
    out[:] = (60, 150, 90)
    art = cv2.resize(face[: int(h * 0.7)], (int(w * 0.7), int(h * 0.7 * 0.7)), interpolation=cv2.INTER_AREA)
    y0, x0 = h - art.shape[0], (w - art.shape[1]) // 2
    out[y0:, x0 : x0 + art.shape[1]] = art
    rng = np.random.default_rng(seed)
    for k in range(3):
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, 7))
        cv2.putText(out, word, (14, 50 + 45 * k), cv2.FONT_HERSHEY_TRIPLEX, 1.1, (250, 250, 250), 2, cv2.LINE_AA)
    return out


def test_an_edition_that_moves_the_artwork_onto_another_layout_is_not_accepted(twins_world: dict) -> None:
    """The cover's outline holds the matched artwork, which would continue past the cover's edge: another edition."""
    ident, faces = twins_world["ident"], twins_world["faces"]
    for name, face, expected in (
        ("card_3", faces["card_3"], "accept"),
        ("card_3", _relaid_out(faces["card_3"], 5), "review"),
    ):
        r = ident.identify(_on_table(face))
        assert r["match"]["id"] == name.replace("_", "-")  # review names the look-alike
        assert r["decision"] == expected
        assert r["reason"] == (None if expected == "accept" else "other_edition")


def _on_table(face: np.ndarray) -> np.ndarray:
    scene = np.full((760, 1000, 3), (35, 40, 48), np.uint8)  # a plain table: a clear outline
    big = cv2.resize(face, None, fx=1.25, fy=1.25)
    # near the photo's lower edge: where the reference would continue, the photo mostly ends (little to disagree)
    scene[-big.shape[0] - 50 : -50, 300 : 300 + big.shape[1]] = big
    return scene


def test_calibration_replays_the_consistency_step(twins_world: dict) -> None:
    """An edition the consistency step sends to review is no negative to calibrate against: without the
    step, calibration would put the accept threshold above its score and above every correct match."""
    import dataclasses

    from cover_id.evaluate.calibrate import calibrate
    from cover_id.evaluate.probe import Prober
    from cover_id.identify.decide import Thresholds

    ident, faces = twins_world["ident"], twins_world["faces"]
    rows = {r["id"]: i for i, r in enumerate(ident.store.records)}
    prober = Prober(ident)
    probes = [
        prober.probe(_photo(faces[name], seed), rows[name.replace("_", "-")], name, keep_photo=True)
        for seed, name in enumerate(("card_2", "card_3", "card_4", "card_2", "card_3", "card_4"), start=60)
    ]
    edition = prober.probe(_on_table(_relaid_out(faces["card_3"], 5)), None, "edition", keep_photo=True)
    assert edition.result["decision"] == "review" and edition.result["geom_score"] > 0.6
    assert all(p.result["decision"] == "accept" for p in probes)
    cal = calibrate([*probes, edition], Thresholds())
    assert cal["accept_score"] < edition.result["geom_score"]
    assert cal["after"]["accepted_correct"] == 1.0 and cal["after"]["false_accepts"] == 0
    blind = calibrate([dataclasses.replace(p, photo=None) for p in [*probes, edition]], Thresholds())
    assert blind["accept_score"] > edition.result["geom_score"]  # what calibration did before


def test_outline_fit_tells_another_layout_from_a_frame_and_an_overlapping_cover() -> None:
    from cover_id.identify.consistency import OutlineFit

    assert OutlineFit(explained=0.35, beyond=0.25, inside=1.0).other_cover  # artwork moved and cut
    assert not OutlineFit(explained=0.35, beyond=0.0, inside=1.0).other_cover  # a frame around the whole reference
    assert not OutlineFit(explained=0.35, beyond=0.6, inside=0.1).other_cover  # another cover lying over it
    assert not OutlineFit(explained=0.95, beyond=0.2, inside=1.0).other_cover  # the outline is the cover, cut off


@pytest.fixture(scope="module")
def printings_world(tmp_path_factory) -> dict:
    """Cards of which some are in the collection in two printings (another set code and rarity stamp)."""
    root = tmp_path_factory.mktemp("printings")
    refs = root / "refs"
    refs.mkdir()
    faces = {f"card_{i}": _card(10 + i) for i in range(1, 6)}
    for i in (1, 2, 3):
        faces[f"card_{i}_v1"] = _card(10 + i, stamp=(230, 120, 210), code=f"RA01-EN00{i}")
    for name, face in faces.items():
        cv2.imwrite(str(refs / f"{name}.png"), face)
    build_index(root / "idx", refs=refs, settings={"encoder": "local"}, show_progress=False)
    return {"faces": faces, "ident": Identifier.from_index(root / "idx", {"threads": 2})}


def test_collection_variant_regions_are_where_printings_differ(printings_world: dict) -> None:
    from cover_id.identify.consistency import variant_regions, variant_twins

    store = printings_world["ident"].store
    ids = [r["id"] for r in store.records]
    assert {(ids[i], ids[j]) for i, j in variant_twins(store)} == {(f"card-{k}", f"card-{k}-v1") for k in (1, 2, 3)}
    regions = variant_regions(store)
    assert regions is not None and len(regions.prints) == 6
    ys, xs = np.nonzero(regions.mask)
    # only the bottom strip (set code, stamp) differs between printings, never the artwork
    assert ys.min() >= regions.mask.shape[0] * (SIZE[1] - 70) / SIZE[1]
    assert 0 < regions.mask.mean() < 0.1


def test_variant_regions_are_kept_while_the_collection_changes_little(
    printings_world: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cover_id.identify import consistency
    from cover_id.index.store import IndexStore

    store = printings_world["ident"].store
    found = consistency.variant_regions(store)
    n, appended = store.size, store.appended
    assert store.shared["variant_regions"] == (n, appended, found)
    kept = consistency.VariantRegions(np.zeros((2, 2), np.float32), [])
    monkeypatch.setattr(consistency, "REGION_REFRESH", 0.3)
    store.shared["variant_regions"] = (n - 1, appended - 1, kept)  # one reference added since: 2 of 7, within 30 %
    assert consistency.variant_regions(store) is kept
    store.shared["variant_regions"] = (n, appended - n, kept)  # as many changed files since: found again
    again = consistency.variant_regions(store)
    assert again is not kept and again is not None and np.array_equal(again.mask, found.mask)

    # the next process reads them from the index folder instead of looking again
    reopened = IndexStore.open(store.path)
    assert "variant_regions" not in reopened.shared
    monkeypatch.setattr(consistency, "variant_twins", lambda s: pytest.fail("looked for twins again"))
    read = consistency.variant_regions(reopened)
    assert read is not None and np.array_equal(read.mask, found.mask) and len(read.prints) == len(found.prints)
    assert all(np.array_equal(a, b) for a, b in zip(read.prints, found.prints))
    (store.path / consistency.REGIONS_FILE).write_bytes(b"torn")  # an unreadable file: looked for again
    monkeypatch.undo()
    assert consistency.variant_regions(IndexStore.open(store.path)) is not None


def test_a_printing_missing_from_the_collection_is_not_accepted_as_its_twin(printings_world: dict) -> None:
    ident, faces = printings_world["ident"], printings_world["faces"]
    r = ident.identify(_photo(faces["card_4"], 51))  # in the collection, one printing: accepted, verified
    assert r["decision"] == "accept" and r["match"]["id"] == "card-4"
    assert r["variant_regions"]["cells"] >= 1 and r["variant_regions"]["differ"] == 0
    other = _card(14, stamp=(40, 190, 240), code="RA02-EN004")  # card 4 reprinted: not in the collection
    r = ident.identify(_photo(other, 52))
    assert r["decision"] == "review" and r["reason"] == "variant" and r["match"]["id"] == "card-4"
    assert r["variant_regions"]["differ"] >= 1


def test_dead_band_counts_a_flat_region_as_unlike_the_reference() -> None:
    ncc = np.full((8, 6), 0.9, np.float32)
    keypoints = np.full((8, 6), 10, np.int32)
    inliers = np.full((8, 6), 4, np.int32)
    reference = np.full((8, 6), 10, np.int32)
    visible = np.ones((8, 6), bool)
    contrast = np.full((8, 6), 1.0, np.float32)
    inliers[6:], keypoints[6:] = 0, 0  # the bottom quarter: no inlier, no keypoint of its own
    ncc[6:] = 0.5  # a plain title block: the correlation may land either side by chance ...
    ev = Evidence(ncc, keypoints, inliers, reference, visible, contrast)
    assert ev.dead_band()[1] == 0.0
    contrast[6:] = 0.1  # ... but it is far flatter than the reference there
    contradicted, unlike, expected, _ = Evidence(ncc, keypoints, inliers, reference, visible, contrast).dead_band()
    assert contradicted == 0.0 and unlike == 1.0 and expected >= 15
    contrast[6:] = 0.8  # blur or haze lowers the texture a little: still the reference
    assert Evidence(ncc, keypoints, inliers, reference, visible, contrast).dead_band()[1] == 0.0


def test_a_rival_matching_only_what_the_best_matches_is_not_held_against_it() -> None:
    from cover_id.identify.decide import ThresholdPolicy, common_evidence
    from cover_id.rerankers.base import GeomMatch

    def match(score: float, inl: np.ndarray) -> GeomMatch:
        m = GeomMatch(ref_index=0, inliers=len(inl), score=score, sane=True)
        m.detail["inlier_q"] = inl
        return m

    best = match(0.82, np.arange(300))
    frame_only = match(0.72, np.arange(0, 100))  # the shared frame: the best's own keypoints, a third as many
    twin = match(0.80, np.arange(5, 300))  # another printing: as much evidence as the best
    elsewhere = match(0.72, np.arange(400, 500))  # another cover's own keypoints
    policy = ThresholdPolicy()
    assert common_evidence(best, frame_only) == 1.0 and policy.decide(best, frame_only, 0.0) == "accept"
    assert common_evidence(best, twin) == 0.0 and policy.decide(best, twin, 0.0) == "review"
    assert common_evidence(best, elsewhere) == 0.0 and policy.decide(best, elsewhere, 0.0) == "review"
