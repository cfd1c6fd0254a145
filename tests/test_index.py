"""Index store: build, incremental updates, atomic writes, compatibility checks."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cover_id.errors import CoverIdError, IndexMismatchError
from cover_id.index.build import build_index
from cover_id.index.store import IndexStore
from tests.conftest import write_covers

LOCAL = {"encoder": "local"}
CLIP_RANDOM = {"encoder": "clip", "pretrained": None, "model": "ViT-B-32"}


def test_build_writes_every_part(covers: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    report = build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    assert report.indexed == 6 and report.embedded == 6 and report.images_per_second > 0
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "refs.db", "vectors.f32", "keypoints.bin", "global.npz", "voter.faiss"} <= names
    assert "encoder_state.npz" in names  # the local codebook travels with the index
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == 2 and m["count"] == 6 and m["encoder"]["name"] == "local"
    assert m["search"]["type"] == "flat" and m["search"]["dim"] <= 256
    vectors = np.fromfile(out / "vectors.f32", np.float32).reshape(-1, m["dim"])
    assert vectors.shape == (6, m["dim"]) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    store = IndexStore.open(out)
    files = store.manifest["files"]
    assert len(files) == 6 and all(len(files[r["filename"]]) == 64 for r in store.records)
    assert store.records[0]["id"] == "cover-000"
    assert store.faiss_index().ntotal == 6 and all(len(f) > 20 for f in store.features)
    scores, idx = store.search(store.embeddings, 3)
    assert list(idx[:, 0]) == list(range(6))  # each reference finds itself first


def test_incremental_reembeds_only_changes(covers: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    before = IndexStore.open(out)
    write_covers(covers, 1, start=50)  # new
    (covers / "cover_001.jpg").unlink()  # deleted
    import cv2

    from cover_id.evaluate.synth import make_cover

    cv2.imwrite(str(covers / "cover_002.jpg"), make_cover(99, (240, 320)))  # changed
    report = build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    assert (report.embedded, report.reused, report.removed, report.indexed) == (2, 4, 1, 6)
    after = IndexStore.open(out)
    i_old, i_new = before.index_of("cover-003"), after.index_of("cover-003")
    assert np.array_equal(before.embeddings[i_old], after.embeddings[i_new])
    assert after.index_of("cover-001") is None and after.index_of("cover-050") is not None
    report = build_index(out, refs=covers, settings=LOCAL, rebuild=True, show_progress=False)
    assert report.embedded == 6 and report.reused == 0


def test_other_encoder_on_existing_index_is_refused(covers: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        build_index(out, refs=covers, settings=CLIP_RANDOM, show_progress=False)
    # auto keeps the encoder the index was built with
    report = build_index(out, refs=covers, settings={"encoder": "auto"}, show_progress=False)
    assert report.encoder == "local" and report.reused == 6


def test_bad_files_are_skipped_with_reasons_and_duplicates_reported(covers: Path, tmp_path: Path) -> None:
    (covers / "zero.jpg").write_bytes(b"")
    (covers / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (covers / "copy.jpg").write_bytes((covers / "cover_000.jpg").read_bytes())
    from PIL import Image

    Image.new("L", (13000, 12000)).save(covers / "bomb.png", optimize=True)
    report = build_index(tmp_path / "idx", refs=covers, settings=LOCAL, show_progress=False)
    reasons = {s.filename: s.reason for s in report.skipped}
    assert set(reasons) == {"zero.jpg", "garbage.png", "bomb.png"}
    assert "empty" in reasons["zero.jpg"] and "too large" in reasons["bomb.png"]
    assert report.duplicates == [("cover_000.jpg", "copy.jpg")]  # (duplicate, first seen)
    assert report.indexed == 7


def test_crash_while_committing_keeps_previous_index(covers: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "idx"
    build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    write_covers(covers, 2, start=70)
    from cover_id.index.disk import Disk

    real = Disk.append

    def boom(self, db, items):
        real(self, db, items)  # segment bytes and rows written, transaction not committed
        raise KeyboardInterrupt

    monkeypatch.setattr(Disk, "append", boom)
    with pytest.raises(KeyboardInterrupt):
        build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    store = IndexStore.open(out)
    assert store.size == 6 and store.index_of("cover-070") is None
    monkeypatch.setattr(Disk, "append", real)
    report = build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    assert (report.embedded, report.reused) == (2, 6)
    store = IndexStore.open(out)
    assert store.size == 8 and store.features[store.index_of("cover-071")].desc.shape[1] == 128


def test_interrupt_while_embedding_keeps_previous_index(covers: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "idx"
    build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    before = (out / "manifest.json").read_text()
    write_covers(covers, 3, start=80)
    import cover_id.features as features

    calls = {"n": 0}
    real = features.extract_features

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(features, "extract_features", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    assert (out / "manifest.json").read_text() == before


def test_damaged_or_foreign_folders_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(CoverIdError, match="not a cover-id index"):
        IndexStore.open(tmp_path / "plain")
    with pytest.raises(CoverIdError, match="index not found"):
        IndexStore.open(tmp_path / "missing")


def test_metadata_catalog_fields_travel_with_the_index(tmp_path: Path) -> None:
    write_covers(tmp_path / "img", 3)
    lines = [
        {
            "id": f"album-{i}",
            "name": f"Album {i}",
            "cover_id": str(i),
            "cover_url": "",
            "local_filename": f"img/cover_{i:03d}.jpg",
            "artist": "Someone",
            "year": 1990 + i,
        }
        for i in range(3)
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    build_index(tmp_path / "idx", metadata=tmp_path / "metadata.jsonl", settings=LOCAL, show_progress=False)
    store = IndexStore.open(tmp_path / "idx")
    rec = store.records[store.index_of("album-2")]
    assert rec["artist"] == "Someone" and rec["year"] == 1992 and rec["filename"] == "img/cover_002.jpg"
    assert store.image_path(0).is_file()


def test_clip_random_weights_index(covers: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip"
    report = build_index(out, refs=covers, settings=CLIP_RANDOM, show_progress=False)
    assert report.encoder == "clip"
    store = IndexStore.open(out)
    assert store.dim == 512 and store.encoder_spec["weights"] == "random:seed0"
    encoder = store.create_encoder()
    import cv2

    query = encoder.encode_images([cv2.imread(str(covers / "cover_004.jpg"))])
    _, idx = store.search(query, 1)
    assert store.records[idx[0, 0]]["id"] == "cover-004"


def test_clip_from_saved_state_dict(covers: Path, tmp_path: Path) -> None:
    import torch

    from cover_id.encoders.clip import ClipEncoder

    enc = ClipEncoder(pretrained=None)
    weights = tmp_path / "vitb32.pt"
    torch.save(enc.net.state_dict(), weights)
    out = tmp_path / "clipfile"
    build_index(out, refs=covers, settings={**CLIP_RANDOM, "pretrained": str(weights)}, show_progress=False)
    spec = IndexStore.open(out).encoder_spec
    assert spec["weights"].startswith("sha256-head-tail:")
    v1 = ClipEncoder(pretrained=str(weights)).encode_images([np.full((64, 64, 3), 128, np.uint8)])
    v2 = enc.encode_images([np.full((64, 64, 3), 128, np.uint8)])
    assert np.allclose(v1, v2, atol=1e-5)


def test_offline_hub_is_detected_fast(monkeypatch) -> None:
    import cover_id.encoders.clip as clip
    from cover_id.encoders import resolve_encoder_name
    from cover_id.encoders.clip import ClipEncoder
    from cover_id.errors import WeightsUnavailableError

    # The probe really runs, against a local port nothing listens on: no test touches the network.
    monkeypatch.setattr(clip, "HUB_HOST", "127.0.0.1")
    monkeypatch.setattr(clip, "HUB_PORT", 9)
    for offline in ("1", "0"):  # explicit offline flag, and a real (failing) probe
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        t = time.perf_counter()
        with pytest.raises(WeightsUnavailableError, match="--encoder local"):
            ClipEncoder()
        assert time.perf_counter() - t < 30  # a hub retry loop takes ~45 s
        name, notice = resolve_encoder_name("auto", "ViT-B-32", "laion2b_s34b_b79k")
        assert name == "local" and "local" in notice


def test_projection_head_is_applied_and_checked(covers: Path, tmp_path: Path) -> None:
    from cover_id.training.projection import Projection, save_projection

    out = tmp_path / "idx"
    build_index(out, refs=covers, settings=LOCAL, show_progress=False)
    store = IndexStore.open(out)
    rng = np.random.default_rng(0)
    d = store.dim
    head = Projection([rng.normal(size=(32, d)).astype(np.float32)], [np.zeros(32, np.float32)], store.encoder_spec)
    path = tmp_path / "head.pt"
    save_projection(head, path)
    report = build_index(out, refs=covers, settings=LOCAL, projection_path=path, show_progress=False)
    assert report.embedded == 0  # re-projected from stored raw vectors
    store = IndexStore.open(out)
    assert store.dim == 32 and store.manifest["projection"]["fingerprint"] == head.fingerprint
    assert np.allclose(store.embeddings, head.apply(store.raw_embeddings), atol=1e-5)
    wrong = Projection(
        [rng.normal(size=(8, 512)).astype(np.float32)],
        [np.zeros(8, np.float32)],
        {"name": "clip", "params": {"model": "ViT-B-32", "pretrained": None}},
    )
    save_projection(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CoverIdError, match="trained for encoder 'clip'"):
        build_index(out, refs=covers, settings=LOCAL, projection_path=tmp_path / "wrong.pt", show_progress=False)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CoverIdError, match="not a cover-id projection head"):
        build_index(out, refs=covers, settings=LOCAL, projection_path=tmp_path / "junk.pt", show_progress=False)
