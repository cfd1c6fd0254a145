"""Format-2 store: incremental writes, tombstones and compaction, kill -9 safety, resumable builds."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cover_id.errors import CoverIdError
from cover_id.index.build import build_index
from cover_id.index.store import IndexStore
from tests.conftest import write_covers

LOCAL = {"encoder": "local"}
ROOT = Path(__file__).resolve().parents[1]


def _fingerprint(store: IndexStore) -> dict[str, tuple]:
    """id -> (record, raw vector, keypoints) for comparing two indexes."""
    out = {}
    for i, r in enumerate(store.records):
        f = store.features[i]
        out[r["id"]] = (
            json.dumps(r, sort_keys=True),
            store.raw_embeddings[i].tobytes(),
            f.desc.tobytes(),
            f.xy.tobytes(),
        )
    return out


@pytest.fixture
def built(covers: Path, tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    return out


def test_add_remove_compact_on_the_store(built: Path) -> None:
    store = IndexStore.open(built)
    feats, raw = store.features[1], store.raw_embeddings[1]
    snap = store.copy()
    row = snap.add({"id": "extra", "name": "Extra", "filename": "x.jpg"}, raw, feats, "ab" * 32)
    assert snap.records[row]["id"] == "extra" and store.index_of("extra") is None  # pending, other snapshot untouched
    snap.save()
    assert IndexStore.open(built).index_of("extra") == 6  # committed, visible to a fresh open
    scores, idx = snap.search(snap.embeddings[[row]], 2)
    assert set(idx[0]) == {1, 6}  # the copy holds the same vector as reference 1
    snap.remove("cover-002")
    assert snap.index_of("cover-002") is None and store.index_of("cover-002") == 2
    snap.save()
    again = IndexStore.open(built)
    assert again.size == 6 and again.dead == 1 and again.index_of("cover-002") is None
    assert [r["id"] for r in again.records] == [
        "cover-000",
        "cover-001",
        "cover-003",
        "cover-004",
        "cover-005",
        "extra",
    ]
    _, idx = again.search(again.embeddings[[1]], 6)
    assert 1 in idx[0] and all(i < 6 for i in idx[0])  # tombstoned slot never comes back as a row
    assert again.voter().shortlist(again.features[2], 1)[0][0] == 2
    before = _fingerprint(again)
    again.compact()
    assert again.dead == 0 and _fingerprint(IndexStore.open(built)) == before


def test_automatic_compaction_past_the_threshold(built: Path, monkeypatch) -> None:
    import cover_id.index.store as store_mod

    monkeypatch.setattr(store_mod, "COMPACT_MIN_DEAD", 2)
    store = IndexStore.open(built)
    store.remove("cover-000")
    store.save()
    assert IndexStore.open(built).dead == 1  # 1 of 6: below both limits
    store.remove("cover-001")
    store.save()  # 2 of 6 >= 25 %: rewritten without them
    reopened = IndexStore.open(built)
    assert reopened.dead == 0 and reopened.size == 4 and store.dead == 0


def test_incremental_index_touches_only_what_changed(covers: Path, built: Path) -> None:
    db_rows = lambda: IndexStore.open(built)._disk.query("SELECT COUNT(*) FROM refs")[0][0]  # noqa: E731
    report = build_index(built, refs=covers, settings=LOCAL, show_progress=False)
    assert (report.embedded, report.reused, report.removed) == (0, 6, 0) and db_rows() == 6
    write_covers(covers, 1, start=40)
    os.utime(covers / "cover_003.jpg", ns=(1, 1))  # touched but not changed: no re-embedding
    report = build_index(built, refs=covers, settings=LOCAL, show_progress=False)
    assert (report.embedded, report.reused) == (1, 6) and db_rows() == 7


def test_format_1_index_says_how_to_rebuild_and_index_converts_it(covers: Path, tmp_path: Path) -> None:
    old = tmp_path / "v1"
    old.mkdir()
    (old / "manifest.json").write_text(
        json.dumps({"format": 1, "refs_root": str(covers), "calibration": {"accept_score": 9.0}})
    )
    (old / "embeddings.npz").write_bytes(b"")
    with pytest.raises(CoverIdError, match=r"format-1 index.*cover-id index --refs"):
        IndexStore.open(old)
    report = build_index(old, refs=covers, settings=LOCAL, show_progress=False)
    assert "format-1" in (report.notice or "")
    store = IndexStore.open(old)
    assert store.size == 6 and store.manifest["calibration"] == {"accept_score": 9.0}
    assert not (old / "embeddings.npz").exists()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_kill_9_during_writes_leaves_previous_or_new_state(built: Path) -> None:
    """A writer adding and deleting in a loop is killed at random moments; every open sees whole states."""
    code = f"""
        import sys
        from cover_id.index.store import IndexStore
        store = IndexStore.open({str(built)!r})
        feats, raw = store.features[0], store.raw_embeddings[0]
        for k in range(10_000):
            s = store.copy()
            s.add({{"id": f"w{{k}}", "name": "W", "filename": f"w{{k}}.jpg"}}, raw, feats, "00" * 32)
            if k % 3 == 2:
                s.remove(f"w{{k - 1}}")
            s.save()
            store = s
            print(k, flush=True)
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen = 0
    for delay in (0.8, 1.3, 1.9):
        proc = subprocess.Popen(_python(code), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = IndexStore.open(built)
        ids = [r["id"] for r in store.records]
        assert len(ids) == len(set(ids)) == store.size
        for i in range(store.size):  # every visible row is whole: record, keypoints and vector
            assert store.features[i].desc.shape == (len(store.features[i]), 128) and len(store.features[i]) > 0
            assert np.isfinite(store.raw_embeddings[i]).all()
        extra = [int(x[1:]) for x in ids if x.startswith("w")]
        seen += len(extra)
        # adds and deletes of one save commit together: w{k-1} is gone exactly when w{k} (k % 3 == 2) is there
        for k in extra:
            if k % 3 == 2:
                assert (k - 1) not in extra
        _, idx = store.search(store.embeddings[[0]], 3)
        assert (idx[0] >= 0).all()
        # restore for the next round
        s = store.copy()
        for x in [r for r in ids if r.startswith("w")]:
            s.remove(x)
        s.save()
    assert seen > 0  # the writer got somewhere before being killed


def test_interrupted_build_resumes(covers: Path, tmp_path: Path) -> None:
    write_covers(covers, 10, start=20)
    out = tmp_path / "idx"
    code = f"""
        import cover_id.index.build as b
        from pathlib import Path
        real = b.extract_one
        n = {{"k": 0}}
        def slow(path):
            n["k"] += 1
            if n["k"] > 8:
                import time; time.sleep(60)
            return real(path)
        b.extract_one = slow
        b.BATCH = 4
        b.build_index(Path({str(out)!r}), refs=Path({str(covers)!r}), settings={{"encoder": "local"}},
                      show_progress=False)
    """
    proc = subprocess.Popen(_python(code), cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    building = tmp_path / ".idx.building" / "refs.db"
    import sqlite3

    deadline = time.time() + 60
    rows = 0
    while time.time() < deadline and rows < 4:
        time.sleep(0.3)
        if building.exists():
            try:
                with sqlite3.connect(building) as db:
                    rows = db.execute("SELECT COUNT(*) FROM refs").fetchone()[0]
            except sqlite3.Error:
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert rows >= 4 and not out.exists()
    report = build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    assert report.resumed >= 4 and report.indexed == 16
    fresh = tmp_path / "fresh"
    build_index(fresh, refs=covers, settings=LOCAL, show_progress=False)
    assert _fingerprint(IndexStore.open(out)) == _fingerprint(IndexStore.open(fresh))


def test_leftovers_of_killed_writes_are_reported_then_cleaned(built: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cover_id.cli import app
    from cover_id.pipeline import Identifier
    from cover_id.server.collection import Collection

    stale = tmp_path / ".idx.staging-999999999-abc"
    stale.mkdir()
    (stale / "vectors.f32").write_bytes(b"x" * 1000)
    added = tmp_path / "idx.added"
    added.mkdir()
    (added / "orphan.jpg").write_bytes(b"jpeg")
    res = CliRunner().invoke(app, ["info", str(built), "--json"])
    assert res.exit_code == 0, res.output
    left = json.loads(res.output)["leftovers"]
    assert sorted(Path(p).name for p in left) == [".idx.staging-999999999-abc", "orphan.jpg"]
    col = Collection(Identifier(IndexStore.open(built)), built)
    assert not stale.exists() and not (added / "orphan.jpg").exists() and len(col.cleaned) == 2


@pytest.mark.slow
def test_workers_and_ray_builds_equal_a_local_build(covers: Path, tmp_path: Path) -> None:
    write_covers(covers, 4, start=30)
    local = tmp_path / "local"
    build_index(local, refs=covers, settings=LOCAL, show_progress=False)
    want = _fingerprint(IndexStore.open(local))
    procs = tmp_path / "procs"
    build_index(procs, refs=covers, settings=LOCAL, show_progress=False, workers=2)
    assert _fingerprint(IndexStore.open(procs)) == want
    pytest.importorskip("ray")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a real local Ray instance, 2 CPUs
    try:
        on_ray = tmp_path / "ray"
        build_index(on_ray, refs=covers, settings=LOCAL, show_progress=False, ray_address="auto")
        assert ray.is_initialized()  # joined the running instance, left it running
        assert _fingerprint(IndexStore.open(on_ray)) == want
        g1, g2 = np.load(local / "global.npz"), np.load(on_ray / "global.npz")
        assert np.array_equal(g1["basis"], g2["basis"])
    finally:
        ray.shutdown()


def test_memory_mapped_voter_with_added_references_votes_like_one_index(covers: Path, tmp_path: Path) -> None:
    import cv2

    from cover_id.features import extract_features
    from cover_id.index.vote import DescriptorVoter

    write_covers(covers, 30, start=10)
    feats = [extract_features(cv2.imread(str(p))) for p in sorted(covers.glob("*.jpg"))]
    for ivf_above in (10**9, 2000):  # exact, and IVF-SQ8
        whole = DescriptorVoter(ivf_above=ivf_above)
        whole.fit(feats[:20])
        saved = tmp_path / f"voter{ivf_above}.faiss"
        whole.save(str(saved))
        whole.add(feats[20:])
        mapped = DescriptorVoter.load(str(saved), 20, ivf_above=ivf_above)
        mapped.add(feats[20:])
        assert mapped.n_refs == whole.n_refs == len(feats)
        for q in feats[::5]:
            np.testing.assert_array_equal(mapped.votes(q), whole.votes(q))


def test_compact_command(built: Path) -> None:
    from typer.testing import CliRunner

    from cover_id.cli import app

    store = IndexStore.open(built)
    store.remove("cover-004")
    store.save()
    assert IndexStore.open(built).dead == 1
    res = CliRunner().invoke(app, ["index", "--out", str(built), "--compact"])
    assert res.exit_code == 0 and "1 deleted" in res.output, res.output
    again = IndexStore.open(built)
    assert again.dead == 0 and again.size == 5 and again.index_of("cover-004") is None


def test_vote_index_is_filled_in_batches_beyond_the_limit(covers: Path, tmp_path: Path, monkeypatch) -> None:
    import cover_id.index.build as build_mod

    write_covers(covers, 10, start=40)
    whole = tmp_path / "whole"
    build_index(whole, refs=covers, settings=LOCAL, show_progress=False)
    monkeypatch.setattr(build_mod, "VOTER_ALL_BELOW", 1000)  # trained on every k-th reference
    monkeypatch.setattr(build_mod, "VOTER_BATCH", 3)
    batched = tmp_path / "batched"
    build_index(batched, refs=covers, settings=LOCAL, show_progress=False)
    a, b = IndexStore.open(whole), IndexStore.open(batched)
    assert a.voter().n_refs == b.voter().n_refs == 16
    for i in range(a.size):
        assert b.voter().shortlist(b.features[i], 1)[0][0] == i


def _start_serve(index: Path) -> tuple[subprocess.Popen, str]:
    import re

    proc = subprocess.Popen(
        [sys.executable, "-m", "cover_id", "serve", "--index", str(index), "--port", "0", "--log-level", "warning"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    line, deadline = "", time.monotonic() + 90
    while "http://" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "serve exited early"
    match = re.search(r"http://[^/ ]+", line)
    assert match
    return proc, match.group(0)


@pytest.mark.slow
def test_serve_killed_during_adds_and_deletes_loses_nothing_committed(covers: Path, built: Path) -> None:
    """kill -9 a real server while clients add and delete: every acknowledged write is there, nothing is torn."""
    import threading

    import httpx

    images = [(covers / f"cover_{i:03d}.jpg").read_bytes() for i in range(6)]
    proc, url = _start_serve(built)
    acked: dict[str, str] = {}  # id -> "added" | "deleted", as the server answered

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            for k in range(1000):
                try:
                    r = c.post(
                        "/api/refs",
                        files={"file": ("x.jpg", images[k % 6], "image/jpeg")},
                        data={"name": f"Added {k}", "id": f"add-{k}"},
                    )
                    if r.status_code == 201:
                        acked[f"add-{k}"] = "added"
                    if k % 2 and c.delete(f"/api/refs/add-{k - 1}").status_code == 200:
                        acked[f"add-{k - 1}"] = "deleted"
                except httpx.HTTPError:
                    return

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join()
    assert len(acked) >= 5
    store = IndexStore.open(built)
    ids = {r["id"] for r in store.records}
    for ref_id, state in acked.items():
        assert (ref_id in ids) == (state == "added"), ref_id
    for i in range(store.size):  # every row is whole
        assert len(store.features[i]) > 0 and store.image_path(i).is_file()
    proc, url = _start_serve(built)  # the next server opens it and cleans what the kill left
    try:
        h = httpx.get(url + "/health", timeout=30).json()
        assert h["index"]["size"] == store.size
        added = built.parent / f"{built.name}.added"
        used = {Path(r["filename"]).name for r in IndexStore.open(built).records}
        assert {p.name for p in added.iterdir()} <= used
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_word_voter_streaming_build_equals_its_postings_sorted_by_word(covers: Path, tmp_path: Path) -> None:
    from cover_id.index.vote import WordVoter

    build_index(tmp_path / "i", refs=covers, settings=LOCAL, show_progress=False)
    store = IndexStore.open(tmp_path / "i")
    feats = [store.features[i] for i in range(store.size)]
    built = WordVoter(coarse=8, fine=8)
    built.build(tmp_path / "words", len(feats), lambda s: feats[s], feats)
    enc = [built.encode(f) for f in feats]  # every posting, in slot order, then sorted by word (stable)
    words = np.concatenate([w for w, _ in enc])
    order = np.argsort(words, kind="stable")
    assert np.array_equal(built.offsets, np.searchsorted(words[order], np.arange(built.vocab.n_words + 1)))
    assert np.array_equal(np.asarray(built.postings), np.repeat(np.arange(len(feats)), [len(w) for w, _ in enc])[order])
    assert np.array_equal(np.asarray(built.sigs), np.concatenate([g for _, g in enc])[order])
    loaded = WordVoter.load(tmp_path / "words")
    assert isinstance(loaded.postings, np.memmap) and not list((tmp_path / "words").glob("scratch.*"))
    assert isinstance(loaded.vocab.c2, np.memmap) and isinstance(loaded.medians, np.memmap)  # not read on open
    for i, f in enumerate(feats):
        assert loaded.shortlist(f, 1)[0][0] == i == built.shortlist(f, 1)[0][0]
        assert np.array_equal(loaded.votes(f), built.votes(f))

    # lists written before the vocabulary was memory-mapped (c2 and medians inside vocab.npz) still open
    old = tmp_path / "words"
    with np.load(old / "vocab.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "c2_norms"}
    arrays.update(c2=np.load(old / "c2.npy"), medians=np.load(old / "medians.npy"))
    (old / "c2.npy").unlink()
    (old / "medians.npy").unlink()
    with open(old / "vocab.npz", "wb") as fh:
        np.savez(fh, **arrays)
    before = WordVoter.load(old)
    assert not isinstance(before.vocab.c2, np.memmap)
    for f in feats:
        assert np.array_equal(before.votes(f), built.votes(f))


def test_word_vote_index_serves_adds_deletes_and_compaction(covers: Path, tmp_path: Path) -> None:
    out = tmp_path / "words"
    build_index(out, refs=covers, settings={**LOCAL, "vote_index": "words"}, show_progress=False)
    store = IndexStore.open(out)
    assert store.manifest["voter_kind"] == "words" and (out / "voter_words" / "postings.npy").is_file()
    assert not (out / "voter.faiss").exists()
    for i in range(store.size):
        assert store.voter().shortlist(store.features[i], 1)[0][0] == i
    feats, raw = store.features[2], store.raw_embeddings[2]
    snap = store.copy()
    snap.remove("cover-002")
    row = snap.add({"id": "again", "name": "Again", "filename": "again.jpg"}, raw, feats, "cd" * 32)
    snap.save()
    fresh = IndexStore.open(out)  # the added reference comes from the in-memory tail, the deleted one is masked
    assert fresh.voter().shortlist(feats, 1)[0][0] == fresh.index_of("again") == row
    fresh.compact()
    again = IndexStore.open(out)
    assert again.dead == 0 and again.manifest["voter_kind"] == "words"
    assert again.voter().shortlist(feats, 1)[0][0] == again.index_of("again")


def test_vote_index_setting_is_checked(covers: Path, tmp_path: Path) -> None:
    from cover_id.index.store import VOTER_NN_MAX, pick_voter

    assert pick_voter(VOTER_NN_MAX) == "nn" and pick_voter(VOTER_NN_MAX + 1) == "words"
    assert pick_voter(10, "words") == "words"
    with pytest.raises(CoverIdError, match="vote_index must be"):
        build_index(tmp_path / "x", refs=covers, settings={**LOCAL, "vote_index": "faiss"}, show_progress=False)


def test_vocabulary_grows_with_the_collection() -> None:
    from cover_id.index.vote import COARSE_MAX, COARSE_MIN, WORDS_FINE, vocabulary_for

    assert vocabulary_for(12_000_000) == (COARSE_MIN, WORDS_FINE, 655_360)  # ~10,000 references: 256 x 256
    assert vocabulary_for(60_000_000)[:2] == (1024, WORDS_FINE)  # ~50,000: more cells, not larger ones
    coarse, fine, train = vocabulary_for(1_200_000_000)  # ~1M: capped, trained on 10 descriptors a word
    assert (coarse, fine, train) == (COARSE_MAX, WORDS_FINE, 10 * COARSE_MAX * WORDS_FINE)
    sizes = [vocabulary_for(n)[0] for n in (0, 10**7, 10**8, 10**9, 10**10)]
    assert sizes == sorted(sizes)


def test_word_vote_index_is_sized_by_the_rule_and_recorded(covers: Path, tmp_path: Path, monkeypatch) -> None:
    from cover_id.index import vote

    monkeypatch.setattr(vote, "COARSE_MIN", 4)
    monkeypatch.setattr(vote, "COARSE_MAX", 16)
    monkeypatch.setattr(vote, "WORDS_FINE", 16)
    monkeypatch.setattr(vote, "POSTINGS_PER_WORD", 1)  # a "large" collection for these few descriptors
    out = tmp_path / "words"
    build_index(out, refs=covers, settings={**LOCAL, "vote_index": "words"}, show_progress=False)
    store = IndexStore.open(out)
    sized = store.manifest["voter_vocabulary"]
    assert (sized["coarse"], sized["fine"]) == (16, 16) and sized["descriptors"] == int(store.keypoint_counts().sum())
    voter = store.voter()._voter
    assert voter.vocab.c2.shape[:2] == (16, 16)  # what the rule chose is what was built and reopened
    for i in range(store.size):
        assert store.voter().shortlist(store.features[i], 1)[0][0] == i


def test_word_votes_read_the_shortest_lists_within_the_budget(covers: Path, tmp_path: Path) -> None:
    from cover_id.index.vote import WordVoter

    voter = WordVoter(max_postings=10)
    lengths = np.array([8, 3, 0, 5, 2, 40])
    assert voter._budget(lengths).tolist() == [0, 3, 0, 5, 2, 0]  # 2 + 3 + 5 <= 10; 8 would pass it
    voter.max_postings = 0
    assert voter._budget(lengths).tolist() == lengths.tolist()  # 0: no budget
    build_index(tmp_path / "i", refs=covers, settings={**LOCAL, "vote_index": "words"}, show_progress=False)
    words = tmp_path / "i" / "voter_words"
    loaded = WordVoter.load(words)
    per_ref = int(loaded.offsets[-1]) // max(1, loaded.covered)
    loaded.max_postings = per_ref  # about one reference's worth of postings per query
    store = IndexStore.open(tmp_path / "i")
    hits = [loaded.shortlist(store.features[i], 1)[0][0] == i for i in range(store.size)]
    assert sum(hits) >= store.size - 1
    again = WordVoter.load(words)
    assert again.max_postings == WordVoter().max_postings and again.assign == 2  # saved with the lists


def test_live_slots_leave_out_tombstones_and_pending_rows(covers: Path, tmp_path: Path) -> None:
    build_index(tmp_path / "i", refs=covers, settings=LOCAL, show_progress=False)
    store = IndexStore.open(tmp_path / "i")
    disk = store._disk
    n = disk.next_slot()
    assert disk.live_slots().tolist() == list(range(n))
    with disk.transaction() as db:
        db.execute("UPDATE refs SET deleted = 1 WHERE slot = 1")
        db.execute("UPDATE refs SET has_vec = 0 WHERE slot = 3")

    def plain() -> list[int]:
        return [r[0] for r in disk.query("SELECT slot FROM refs WHERE deleted = 0 AND has_vec = 1 ORDER BY slot")]

    assert disk.live_slots().tolist() == plain() == [s for s in range(n) if s not in (1, 3)]
    with disk.transaction() as db:  # slots with a gap (not how appends number them): the plain listing
        db.execute("DELETE FROM refs WHERE slot = 0")
    assert disk.live_slots().tolist() == plain() == [s for s in range(1, n) if s not in (1, 3)]


def test_top_votes_are_the_most_voted_ties_by_index() -> None:
    from cover_id.index.vote import top_votes

    rng = np.random.default_rng(0)
    for _ in range(50):
        votes = rng.integers(0, 6, 400).astype(np.float32)  # many ties
        for top in (0, 1, 7, 25, 400, 500):
            voted = np.flatnonzero(votes > 0)
            want = voted[np.argsort(-votes[voted], kind="stable")][:top]
            assert [i for i, _ in top_votes(votes, top)] == want.tolist()
