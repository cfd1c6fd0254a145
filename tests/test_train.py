"""Projection-head training: SupCon loss, K x M sampler, head training, saved heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cover_id.errors import CoverIdError
from cover_id.training.bank import Bank
from cover_id.training.fit import TrainConfig, retrieval_margins, train_on_bank
from cover_id.training.head import make_head
from cover_id.training.loss import supcon_loss
from cover_id.training.sampler import KMSampler

torch.set_num_threads(2)


def _clusters(n_classes: int = 6, per: int = 5, dim: int = 16, noise: float = 0.6, seed: int = 0) -> Bank:
    """Views are class centres moved along a few shared nuisance directions (like lighting or
    blur moving every cover's vector the same way) plus a little noise; row 0 per class is clean."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    nuisance = rng.normal(size=(3, dim)) * 2.0

    def view(c: int) -> np.ndarray:
        x = centres[c] + noise * rng.normal(size=3) @ nuisance + 0.1 * rng.normal(size=dim)
        return x / np.linalg.norm(x)

    vecs, labels, clean = [], [], []
    for c in range(n_classes):
        vecs.append(centres[c] / np.linalg.norm(centres[c]))
        vecs += [view(c) for _ in range(per - 1)]
        labels += [c] * per
        clean += [True] + [False] * (per - 1)
    hold_labels = np.repeat(np.arange(n_classes), 3)
    hold = np.asarray([view(c) for c in hold_labels], np.float32)
    return Bank(np.asarray(vecs, np.float32), np.asarray(labels), np.asarray(clean), hold, hold_labels)


# ---- SupCon -----------------------------------------------------------------------------
def test_supcon_is_finite_and_decreases() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 8, generator=g, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    opt = torch.optim.SGD([z], lr=0.5)
    first = None
    for _ in range(40):
        loss = supcon_loss(z, labels, 0.1)
        assert torch.isfinite(loss)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(z.grad).all()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_supcon_is_invariant_to_label_names_and_batch_order() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(9, 5, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    base = supcon_loss(z, labels)
    renamed = torch.tensor([7, 3, 5])[labels]  # a permutation of the class names
    assert torch.allclose(supcon_loss(z, renamed), base, atol=1e-6)
    perm = torch.randperm(9, generator=g)
    assert torch.allclose(supcon_loss(z[perm], labels[perm]), base, atol=1e-6)
    # well-separated classes give a lower loss than mixed-up ones
    tidy = torch.nn.functional.one_hot(labels, 5).float() * 5 + 0.01 * z
    assert supcon_loss(tidy, labels) < base


def test_supcon_without_positives_is_zero_with_a_graph() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    loss = supcon_loss(z, torch.arange(4))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


# ---- sampler --------------------------------------------------------------------------------
def test_sampler_batches_are_k_classes_by_m_views() -> None:
    bank = _clusters(n_classes=40, per=6)
    s = KMSampler(bank.labels, k=16, m=4, seed=0, clean=bank.clean)
    assert s.steps_per_epoch == 3
    seen = set()
    for rows, labels in s.epoch():
        assert rows.shape == (64,) and labels.shape == (64,)
        classes, counts = np.unique(labels, return_counts=True)
        assert len(classes) == 16 and set(counts) == {4}
        assert np.array_equal(bank.labels[rows], labels)  # rows belong to their class
        for c in classes:  # the clean reference vector is always one of the M
            assert bank.clean[rows[labels == c]].sum() == 1
        seen |= set(classes.tolist())
    assert seen == set(range(40))  # every class once per epoch


def test_sampler_small_collections_and_few_views() -> None:
    bank = _clusters(n_classes=3, per=2)  # 1 clean + 1 view per class
    s = KMSampler(bank.labels, k=16, m=4, seed=0, clean=bank.clean)
    assert s.k == 3 and s.steps_per_epoch == 1
    [(rows, labels)] = list(s.epoch())
    assert rows.shape == (12,) and sorted(np.unique(labels, return_counts=True)[1]) == [4, 4, 4]
    with pytest.raises(CoverIdError, match="at least 2"):
        KMSampler(np.zeros(5, int), k=4, m=2)


def test_sampler_is_deterministic_with_a_seed() -> None:
    bank = _clusters(n_classes=10)
    a = [r for r, _ in KMSampler(bank.labels, 4, 3, seed=5, clean=bank.clean).epoch()]
    b = [r for r, _ in KMSampler(bank.labels, 4, 3, seed=5, clean=bank.clean).epoch()]
    c = [r for r, _ in KMSampler(bank.labels, 4, 3, seed=6, clean=bank.clean).epoch()]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


# ---- head ------------------------------------------------------------------------------------
def test_head_starts_as_identity_and_numpy_matches_torch() -> None:
    head = make_head(16, 32, seed=0)
    x = torch.nn.functional.normalize(torch.randn(5, 16), dim=1)
    assert torch.allclose(head(x), x, atol=1e-6)
    torch.nn.init.normal_(head.l2.weight)
    from cover_id.training.head import head_to_projection

    proj = head_to_projection(head, {"name": "x"}, {})
    assert np.allclose(proj.apply(x.numpy()), head(x).detach().numpy(), atol=1e-5)


CFG = TrainConfig(epochs=30, lr=3e-3, k=4, m=3, hidden=32, seed=0)


def test_training_widens_held_out_margins_and_is_deterministic() -> None:
    bank = _clusters(n_classes=8, per=6, noise=0.9)
    a = train_on_bank(bank, {"name": "fake", "params": {}}, CFG)
    b = train_on_bank(bank, {"name": "fake", "params": {}}, CFG)
    assert a.losses[-1] < a.losses[0]
    assert a.after["mean"] > a.before["mean"]
    assert all(np.array_equal(w1, w2) for w1, w2 in zip(a.projection.weights, b.projection.weights))
    assert a.projection.meta["margins"]["after"] == a.after and a.projection.encoder["name"] == "fake"
    m = retrieval_margins(bank.references, bank.holdout, bank.holdout_labels)
    assert m == a.before


def test_ctrl_c_keeps_a_usable_head(monkeypatch: pytest.MonkeyPatch) -> None:
    import cover_id.training.fit as tr

    calls = {"n": 0}
    real = tr.supcon_loss

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "supcon_loss", flaky)
    bank = _clusters(n_classes=8)
    res = train_on_bank(bank, {"name": "fake"}, CFG)
    assert res.interrupted and res.epochs_done == 2 and res.projection.meta["interrupted"]
    out = res.projection.apply(bank.vectors)
    assert np.isfinite(out).all() and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-4)


# ---- end to end on generated covers ------------------------------------------------------------
SMALL = TrainConfig(epochs=3, views=2, holdout=1, k=4, m=2, hidden=32, seed=0)


def test_train_from_refs_then_index_uses_the_head(covers: Path, tmp_path: Path) -> None:
    from cover_id.index.build import build_index
    from cover_id.index.store import IndexStore
    from cover_id.training import train
    from cover_id.training.projection import load_projection
    from tests.conftest import write_covers

    head = tmp_path / "head.npz"
    res = train(head, refs=covers, cfg=SMALL, settings={"encoder": "local", "threads": 2})
    proj = load_projection(head)
    assert proj.encoder["name"] == "local" and proj.in_dim == proj.out_dim == proj.encoder["dim"]
    assert proj.meta["classes"] == 6 and proj.meta["epochs_done"] == 3 and res.before["n"] == 6
    idx = tmp_path / "idx"
    build_index(idx, refs=covers, settings={"encoder": "local"}, projection_path=head, show_progress=False)
    store = IndexStore.open(idx)
    assert store.projection is not None and store.manifest["projection"]["fingerprint"] == proj.fingerprint
    # the same head on another collection (another codebook) is refused clearly
    other = tmp_path / "other"
    write_covers(other, 5, start=20)
    with pytest.raises(CoverIdError, match="projection head was trained for"):
        build_index(
            tmp_path / "idx2", refs=other, settings={"encoder": "local"}, projection_path=head, show_progress=False
        )


def test_train_cli_on_an_index_reprojects_without_reembedding(covers: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from cover_id.index.build import build_index
    from cover_id.index.store import IndexStore

    idx = tmp_path / "idx"
    build_index(idx, refs=covers, settings={"encoder": "local"}, show_progress=False)
    head = tmp_path / "head.pt"  # the name earlier versions suggested: still written and read as .npz
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cover_id",
            "train",
            "--index",
            str(idx),
            "--out",
            str(head),
            "--epochs",
            "2",
            "--bank-views",
            "2",
            "--holdout",
            "1",
            "--hidden",
            "32",
            "--threads",
            "2",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "before (encoder)" in out.stdout and "after (head)" in out.stdout and "--projection" in out.stdout
    report = build_index(idx, refs=covers, settings={"encoder": "local"}, projection_path=head, show_progress=False)
    assert report.embedded == 0 and report.reused == 6
    store = IndexStore.open(idx)
    assert np.allclose(store.embeddings, store.projection.apply(store.raw_embeddings), atol=1e-5)
    bad = subprocess.run(
        [sys.executable, "-m", "cover_id", "train", "--out", str(head)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--refs" in bad.stderr and "Traceback" not in bad.stderr
