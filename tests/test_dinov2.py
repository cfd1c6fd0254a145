"""The dinov2 encoder plugin: random weights, a saved state dict, offline errors (no network)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cover_id.errors import CoverIdError, WeightsUnavailableError

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def random_encoder():
    from cover_id.encoders.dinov2 import DinoV2Encoder

    return DinoV2Encoder(pretrained="none")


def test_registered_and_random_weights(random_encoder) -> None:
    from cover_id.encoders import create_encoder
    from cover_id.plugins import available

    assert "dinov2" in available("encoders")
    spec = random_encoder.spec()
    assert spec["name"] == "dinov2" and spec["weights"] == "random:seed0" and spec["dim"] == 384
    # The shared `model` setting defaults to a CLIP name: dinov2 takes its own default then.
    enc = create_encoder("dinov2", model="ViT-B-32", pretrained="none", batch_size=2)
    imgs = [np.full((60, 90, 3), v, np.uint8) for v in (0, 128, 255)] + [np.zeros((40, 40), np.uint8)]
    v = enc.encode_images(imgs)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert np.allclose(v, random_encoder.encode_images(imgs), atol=1e-5)  # seeded: same weights every time
    assert enc.encode_images([]).shape == (0, 384)


def test_saved_state_dict_round_trip(random_encoder, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from cover_id.encoders.dinov2 import DinoV2Encoder

    path = tmp_path / "model.safetensors"
    state = {k: v.contiguous() for k, v in random_encoder.net.state_dict().items()}
    for k in state:  # other weights than the random ones, so loading them is what makes the answer
        state[k] = state[k] + 0.01 * (len(k) % 5)
    save_file(state, str(path))
    loaded = DinoV2Encoder(pretrained=str(path))
    assert loaded.spec()["weights"].startswith("sha256-head-tail:")
    img = [np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)]
    a, b = loaded.encode_images(img), random_encoder.encode_images(img)
    assert not np.allclose(a, b, atol=1e-3)
    assert np.allclose(a, DinoV2Encoder(pretrained=str(path)).encode_images(img), atol=1e-5)


def test_index_and_identify_with_dinov2(covers: Path, tmp_path: Path) -> None:
    from cover_id.index.build import build_index
    from cover_id.index.store import IndexStore
    from cover_id.pipeline import Identifier

    out = tmp_path / "idx"
    build_index(out, refs=covers, settings={"encoder": "dinov2", "pretrained": "none"}, show_progress=False)
    store = IndexStore.open(out)
    assert store.encoder_spec["name"] == "dinov2" and store.dim == 384
    ident = Identifier.from_index(out, {"threads": 2})
    r = ident.identify(covers / "cover_002.jpg")
    assert r["match"]["id"] == "cover-002" and r["decision"] == "accept"


def test_clear_errors_without_network(monkeypatch, tmp_path: Path) -> None:
    from cover_id.encoders.dinov2 import DinoV2Encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even when allowed online, a tag is looked up in the cache only
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="--encoder local"):
        DinoV2Encoder(pretrained="lvd142m")
    assert time.perf_counter() - t < 10
    with pytest.raises(CoverIdError, match="unknown DINOv2 weights 'nope'"):
        DinoV2Encoder(pretrained="nope")
    with pytest.raises(CoverIdError, match="unknown DINOv2 model"):
        DinoV2Encoder(model="resnet50", pretrained="none")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    with pytest.raises(CoverIdError, match="could not load DINOv2 weights junk.safetensors"):
        DinoV2Encoder(pretrained=str(junk))
