"""Compact global vectors: the whitened 4-bit kind, recorded and reopened; upgrading an older kind."""

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from cover_id.index import search
from cover_id.index.build import build_index
from cover_id.index.search import GlobalIndex, exact_for, is_stale, learn_basis, pick_kind
from cover_id.index.store import IndexStore
from tests.conftest import write_covers

LOCAL = {"encoder": "local"}


def _answers(store: IndexStore, k: int = 3) -> tuple[list[list[str]], np.ndarray]:
    """Each reference's own vector searched: the ids found, and their scores."""
    scores, rows = store.search(np.asarray(store.embeddings), k)
    return [[store.records[int(r)]["id"] for r in row] for row in rows], scores


def _make_version_1(out: Path) -> None:
    """Rewrite an index's compact vectors as the previous release did (256-d basis, unwhitened, float32)."""
    store = IndexStore.open(out)
    raw = np.asarray(store.raw_embeddings)
    basis = learn_basis(raw, 256)
    g = GlobalIndex.build(basis, store.dim, store.size, [raw], kind="flat")
    state = {k: v for k, v in g.state().items() if k != "version"}
    with open(out / "global.npz", "wb") as fh:
        np.savez(fh, **state)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["search"] = {"type": "flat", "dim": g.dim, "basis": True, "whiten": False}
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_kind_rules() -> None:
    assert exact_for(100, True) and not exact_for(search.COMPACT_DIM + 1, True)
    assert exact_for(1000, False) and not exact_for(search.IVF_FROM, False)
    assert pick_kind(10, exact=True) == "flat" and pick_kind(5000) == "sq4" and pick_kind(search.IVF_FROM) == "ivfsq4"
    assert is_stale({"type": "flat", "dim": 256, "basis": True, "whiten": False}, 10)  # no version: the old kind
    now = {"type": "sq4", "dim": 1536, "basis": True, "whiten": True, "version": search.COMPACT_VERSION}
    assert not is_stale({**now, "learned_from": 4096}, 50_000)
    assert is_stale({**now, "learned_from": 300}, 5000)  # learned on a collection a tenth of today's
    assert not is_stale({**now, "learned_from": 300}, 500)


def test_whitened_4bit_kind_is_recorded_and_used_on_reopen(tmp_path: Path, monkeypatch) -> None:
    refs = tmp_path / "refs"
    write_covers(refs, 12)
    monkeypatch.setattr(search, "COMPACT_DIM", 8)  # 12 references > 8 dimensions: whitened, like a large collection
    out = tmp_path / "idx"
    build_index(out, refs=refs, settings=LOCAL, show_progress=False)
    m = json.loads((out / "manifest.json").read_text())["search"]
    assert m == {
        "type": "sq4",
        "dim": 8,
        "basis": True,
        "whiten": True,
        "version": search.COMPACT_VERSION,
        "learned_from": 12,
    }
    store = IndexStore.open(out)
    g = store._global()
    assert g.kind == "sq4" and g.whiten and g.dim == 8 and g.covered == 12
    ids, scores = _answers(store, 1)
    assert sum(row[0] == r["id"] for row, r in zip(ids, store.records)) >= 10
    assert np.all(scores <= 1.01)  # whitened vectors are re-normalised: scores stay cosines
    # an added reference lands in the same kind, found by its own vector
    raw, feats = store.raw_embeddings[3], store.features[3]
    snap = store.copy()
    snap.add({"id": "again", "name": "Again", "filename": "again.jpg"}, raw, feats, "ab" * 32)
    snap.save()
    again = IndexStore.open(out)
    assert again._global().kind == "sq4" and again._global().covered == 13
    _, rows = again.search(raw[None, :], 2)
    assert {again.records[int(r)]["id"] for r in rows[0]} == {"again", "cover-003"}


def test_older_kind_is_relearned_without_extracting_features(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    write_covers(refs, 12)
    out = tmp_path / "idx"
    build_index(out, refs=refs, settings=LOCAL, show_progress=False)
    _make_version_1(out)
    old = IndexStore.open(out)
    assert old.search_is_stale and old._global().version == 1
    before_ids, before_scores = _answers(old)
    records = [json.dumps(r, sort_keys=True) for r in old.records]
    segments = {p: (out / p).read_bytes() for p in ("keypoints.bin", "vectors.f32")}

    report = build_index(out, refs=refs, settings=LOCAL, show_progress=False)  # a re-run upgrades
    assert report.relearned and report.embedded == 0 and report.reused == 12
    new = IndexStore.open(out)
    assert not new.search_is_stale and new.manifest["search"]["version"] == search.COMPACT_VERSION
    assert new._global().version == search.COMPACT_VERSION
    assert [json.dumps(r, sort_keys=True) for r in new.records] == records
    assert {p: (out / p).read_bytes() for p in segments} == segments  # nothing re-extracted
    after_ids, after_scores = _answers(new)
    assert after_ids == before_ids and np.allclose(after_scores, before_scores, atol=1e-4)
    assert not build_index(out, refs=refs, settings=LOCAL, show_progress=False).relearned  # once only


def test_compact_flag_relearns_an_older_kind(tmp_path: Path) -> None:
    from cover_id.cli import app

    refs = tmp_path / "refs"
    write_covers(refs, 8)
    out = tmp_path / "idx"
    build_index(out, refs=refs, settings=LOCAL, show_progress=False)
    _make_version_1(out)
    before = _answers(IndexStore.open(out))[0]
    res = CliRunner().invoke(app, ["index", "--out", str(out), "--compact", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "re-learned" in res.output
    store = IndexStore.open(out)
    assert not store.search_is_stale and store.size == 8 and _answers(store)[0] == before
    _make_version_1(out)  # `cover-id index --out INDEX` alone upgrades too, and says when there is nothing to do
    res = CliRunner().invoke(app, ["index", "--out", str(out), "--quiet"])
    assert res.exit_code == 0 and "re-learned" in res.output, res.output
    res = CliRunner().invoke(app, ["index", "--out", str(out), "--quiet"])
    assert res.exit_code != 0 and "up to date" in str(res.exception)


@pytest.mark.parametrize("kind", ["flat", "sq4", "sq8", "ivfsq4"])
def test_every_kind_round_trips(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    basis, scale = search.learn_projection(x, 32, whiten=kind != "flat")
    proj = GlobalIndex(basis, None, 0, kind, scale).project(x)
    g = GlobalIndex.build(basis, 64, 300, [x[:150], x[150:]], proj, scale=scale, kind=kind)
    back = GlobalIndex.from_state(g.state())
    assert back.kind == kind and back.covered == 300 and back.whiten == (kind != "flat")
    a, b = g.search(x[:20], 5), back.search(x[:20], 5)
    assert np.array_equal(a[1], b[1])
    assert (a[1][:, 0] == np.arange(20)).mean() >= 0.9
    # through the files: global.npz names the FAISS file beside it and holds no index bytes
    name = search.save_global(tmp_path, g)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, search.CHECKPOINT])
    with np.load(tmp_path / search.CHECKPOINT) as z:
        assert "index" not in z.files and str(z["index_file"]) == name
    opened = search.load_global(tmp_path)
    assert opened.kind == kind and opened.covered == 300 and opened.whiten == (kind != "flat")
    assert opened.version == g.version and opened.learned_from == g.learned_from
    assert (opened.basis is None) == (g.basis is None) and np.array_equal(opened.scale, g.scale)
    c = opened.search(x[:20], 5)
    assert np.array_equal(a[1], c[1]) and np.allclose(a[0], c[0])
    opened.add(x[:3])  # an opened index stays writable
    assert opened.covered == 303 and opened.index.ntotal == 303


def _global_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("global*"))


def _old_style(folder: Path) -> None:
    """Rewrite the checkpoint as every index built before the FAISS file did: the bytes inside global.npz."""
    g = search.load_global(folder)
    for p in folder.glob("global-*.faiss"):
        p.unlink()
    with open(folder / search.CHECKPOINT, "wb") as fh:
        np.savez(fh, **g.state())


def test_checkpoint_with_the_index_inside_opens_and_the_next_write_converts_it(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    write_covers(refs, 10)
    out = tmp_path / "idx"
    build_index(out, refs=refs, settings=LOCAL, show_progress=False)
    assert len(list(out.glob("global-*.faiss"))) == 1
    want_ids, want_scores = _answers(IndexStore.open(out))
    _old_style(out)
    assert _global_files(out) == ["global.npz"]
    old = IndexStore.open(out)
    ids, scores = _answers(old)
    assert ids == want_ids and np.allclose(scores, want_scores)
    old.checkpoint()  # the next write converts it
    with np.load(out / search.CHECKPOINT) as z:
        assert "index" not in z.files
    assert len(list(out.glob("global-*.faiss"))) == 1
    ids, scores = _answers(IndexStore.open(out))
    assert ids == want_ids and np.allclose(scores, want_scores)


def test_write_interrupted_between_the_two_files_opens_the_previous_state(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    write_covers(refs, 10)
    out = tmp_path / "idx"
    build_index(out, refs=refs, settings=LOCAL, show_progress=False)
    store = IndexStore.open(out)
    want_ids, want_scores = _answers(store)
    before = _global_files(out)
    # a checkpoint of a changed index that died after its FAISS file, before global.npz named it
    g = store._global()
    changed = GlobalIndex(g.basis, faiss.clone_index(g.index), g.covered, g.kind, g.scale, g.version)
    changed.add(np.asarray(store.raw_embeddings)[:4])
    faiss.write_index(changed.index, str(out / "global-0123456789abcdef.faiss"))
    (out / ".global-fedcba9876543210.faiss.x1y2.tmp").write_bytes(b"half a file")  # and one cut off mid-write
    again = IndexStore.open(out)
    assert again._global().covered == 10 and again._global().index.ntotal == 10
    ids, scores = _answers(again)
    assert ids == want_ids and np.allclose(scores, want_scores)
    # the next write removes both orphans, and a checkpoint the FAISS file it replaces
    again.save()
    assert _global_files(out) == before and not list(out.glob(".global-*"))
    again.checkpoint()
    files = _global_files(out)
    assert len(files) == 2 and "global.npz" in files and not (set(files) & set(before)) - {"global.npz"}
    assert not list(out.glob(".global-*"))
    assert _answers(IndexStore.open(out))[0] == want_ids


def test_reader_of_the_old_pair_keeps_working_and_a_reader_racing_a_write_retries(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    g = GlobalIndex.build(None, 16, 50, [x], kind="flat")
    search.save_global(tmp_path, g)
    reader = search.load_global(tmp_path)
    g.add(x[:5])
    search.save_global(tmp_path, g)  # the old FAISS file is gone now
    assert reader.search(x[:3], 1)[1][:, 0].tolist() == [0, 1, 2] and reader.covered == 50
    assert search.load_global(tmp_path).covered == 55
    with np.load(tmp_path / search.CHECKPOINT) as z:  # a checkpoint naming a file that is not there
        state = {k: z[k] for k in z.files}
    state["index_file"] = np.array("global-missing.faiss")
    with pytest.raises(RuntimeError):
        GlobalIndex.from_state(state, tmp_path)
