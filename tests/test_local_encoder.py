import numpy as np
import pytest
from test_features import textured

from cover_id.encoders.local import DescriptorVoter, LocalEncoder
from cover_id.features import extract_features


@pytest.fixture(scope="module")
def covers():
    imgs = [textured(s) for s in range(4)]
    return imgs, [extract_features(im) for im in imgs]


def test_tiny_collection_fits_and_encodes(covers):
    imgs, feats = covers
    enc = LocalEncoder(clusters=16)
    assert not enc.is_fitted()
    enc.fit(imgs[:3])
    assert enc.is_fitted() and enc.dim == 16 * 128
    v = enc.encode_images(imgs)
    assert v.shape == (4, enc.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert np.allclose(v[:3], enc.encode_features(feats[:3]), atol=1e-6)
    sims = v @ v.T
    assert (np.argmax(sims, axis=1) == np.arange(len(imgs))).all()  # every cover is nearest to itself
    assert sims[0, 0] > sims[0, 1:].max()


def test_default_codebook_with_fewer_descriptors_than_needed(covers):
    _, feats = covers
    enc = LocalEncoder()  # 128 clusters, ~1 cover's descriptors
    enc.fit_features(feats[:1])
    assert enc.centroids.shape == (128, 128)


def test_state_round_trip_is_identical_and_deterministic(covers):
    _, feats = covers
    a = LocalEncoder(clusters=16, seed=3)
    a.fit_features(feats)
    b = LocalEncoder()
    b.load_state(a.state())
    np.testing.assert_array_equal(a.encode_features(feats), b.encode_features(feats))
    assert b.spec()["fingerprint"] == a.spec()["fingerprint"] and b.dim == a.dim
    c = LocalEncoder(clusters=16, seed=3)
    c.fit_features(feats)
    assert c.spec()["fingerprint"] == a.spec()["fingerprint"]


def test_unfitted_and_empty_inputs(covers):
    with pytest.raises(ValueError):
        LocalEncoder().encode_features(covers[1][:1])
    enc = LocalEncoder(clusters=8)
    enc.fit_features(covers[1])
    empty = extract_features(np.zeros((40, 40, 3), np.uint8))
    assert not enc.encode_features([empty]).any()


def test_voter_ranks_the_source_first_and_round_trips(covers):
    imgs, feats = covers
    voter = DescriptorVoter()
    voter.fit(feats[:3])
    voter.add(feats[3:])
    assert voter.n_refs == 4
    for i, im in enumerate(imgs):
        noisy = np.clip(im.astype(np.int16) + np.random.default_rng(i).integers(-8, 8, im.shape), 0, 255)
        q = extract_features(noisy.astype(np.uint8))
        assert voter.shortlist(q, 2)[0][0] == i
    again = DescriptorVoter()
    again.load_state(voter.state())
    np.testing.assert_array_equal(again.votes(feats[2]), voter.votes(feats[2]))


def test_voter_ivf_path(covers):
    _, feats = covers
    voter = DescriptorVoter(ivf_above=100)
    voter.fit(feats)
    assert voter.spec()["ivf"]
    assert voter.shortlist(feats[1], 1)[0][0] == 1
