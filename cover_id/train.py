"""Training a projection head with supervised contrastive loss (``cover-id train``).

The encoder stays frozen. Each reference is one class; its members are the
clean reference vector plus ``views`` synthetic phone-photo views (random
crop, rotation, colour jitter, perspective, blur, grayscale, glare,
background). Encoding the views is the slow part on a CPU, so every view is
encoded once into a *bank*; each training step then samples K classes x M
vectors from the bank. The head is a residual MLP whose last layer starts at
zero, so training begins from the encoder's own geometry and only bends it
where views of one reference disagree.

The head is written with :func:`cover_id.projection.save_projection` and
applied with numpy at query time (no torch needed to use it).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from cover_id.errors import CoverIdError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cover_id.encoders.base import Encoder
    from cover_id.projection import Projection

VIEW_SIDE = 640  # views are made from references shrunk to this (query crops are <= 640 px too)


@dataclass
class TrainConfig:
    epochs: int = 20
    lr: float = 1e-3
    k: int = 16  # classes per batch
    m: int = 4  # vectors per class per batch
    views: int = 6  # augmented views per reference in the bank
    holdout: int = 2  # photo-like views per reference kept aside for the before/after margins
    hidden: int = 256
    temperature: float = 0.1
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    keep_best: bool = True  # keep the epoch (0 = the encoder alone) that does best on the held-out views


# ---- loss and sampling ------------------------------------------------------------------
def supcon_loss(z: "torch.Tensor", labels: "torch.Tensor", temperature: float = 0.1) -> "torch.Tensor":
    """Supervised contrastive loss (Khosla et al., 2020), averaged over anchors with a positive.

    For anchor i with positives P(i) (same label, not i):
    ``-1/|P(i)| * sum_p log(exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t))``.
    """
    import torch
    import torch.nn.functional as F

    z = F.normalize(z, dim=1)
    n = z.shape[0]
    sim = (z @ z.T) / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    labels = labels.reshape(-1)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(dim=1)
    valid = n_pos > 0
    if not bool(valid.any()):
        return (z * 0.0).sum()
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    return per_anchor[valid].mean()


class KMSampler:
    """Batches of K classes x M bank rows; every class once per epoch.

    ``labels`` gives each bank row's class; rows flagged in ``clean`` (the
    unaugmented reference vectors, which are what the index stores) are
    always among their class's M, so every batch pulls views towards them.
    Collections with fewer than K classes use all of them in every batch.
    """

    def __init__(self, labels: "np.ndarray", k: int = 16, m: int = 4, seed: int = 0, clean: "np.ndarray | None" = None) -> None:
        import numpy as np

        if k < 1 or m < 1:
            raise CoverIdError("K (classes per batch) and M (views per class) must be at least 1")
        labels = np.asarray(labels)
        self.classes = np.unique(labels)
        if len(self.classes) < 2:
            raise CoverIdError("training needs at least 2 references")
        self.k = min(int(k), len(self.classes))
        self.m = int(m)
        self.rng = np.random.default_rng(seed)
        clean = np.zeros(len(labels), bool) if clean is None else np.asarray(clean, bool)
        self._clean = {c: np.flatnonzero((labels == c) & clean) for c in self.classes}
        self._views = {c: np.flatnonzero((labels == c) & ~clean) for c in self.classes}

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.classes) / self.k)

    def epoch(self) -> "Iterator[tuple[np.ndarray, np.ndarray]]":
        import numpy as np

        order = self.rng.permutation(self.classes)
        for s in range(self.steps_per_epoch):
            chunk = order[s * self.k : (s + 1) * self.k]
            if len(chunk) < self.k:  # top up the last batch with other classes
                rest = np.setdiff1d(self.classes, chunk)
                chunk = np.concatenate([chunk, self.rng.choice(rest, self.k - len(chunk), replace=False)])
            yield self.batch(chunk)

    def batch(self, classes: "np.ndarray") -> "tuple[np.ndarray, np.ndarray]":
        """(rows, labels), each of length len(classes) * M, grouped by class."""
        import numpy as np

        rows, labels = [], []
        for c in classes:
            picked: list[int] = []
            if len(self._clean[c]):
                picked.append(int(self.rng.choice(self._clean[c])))
            need = self.m - len(picked)
            pool = self._views[c] if len(self._views[c]) else self._clean[c]
            if need > 0:
                picked.extend(int(r) for r in self.rng.choice(pool, need, replace=len(pool) < need))
            rows.extend(picked[: self.m])
            labels.extend([c] * self.m)
        return np.asarray(rows, np.int64), np.asarray(labels)


# ---- the head ---------------------------------------------------------------------------
def make_head(d_in: int, hidden: int, d_out: int | None = None, seed: int = 0) -> "torch.nn.Module":
    """Linear -> ReLU -> Linear (+ input when the sizes agree), L2-normalised output."""
    import torch
    from torch import nn

    d_out = d_out or d_in

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1 = nn.Linear(d_in, hidden)
            self.l2 = nn.Linear(hidden, d_out)
            self.residual = d_out == d_in
            if self.residual:  # start as the identity: the encoder's own geometry
                nn.init.zeros_(self.l2.weight)
                nn.init.zeros_(self.l2.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.l2(torch.relu(self.l1(x)))
            if self.residual:
                h = h + x
            return nn.functional.normalize(h, dim=1)

    torch.manual_seed(seed)
    return Head()


def head_to_projection(head: "torch.nn.Module", encoder_spec: dict[str, Any], meta: dict[str, Any]) -> "Projection":
    from cover_id.projection import Projection

    def arr(t: "torch.Tensor") -> "np.ndarray":
        return t.detach().cpu().float().numpy().copy()

    return Projection(
        weights=[arr(head.l1.weight), arr(head.l2.weight)],  # type: ignore[union-attr]
        biases=[arr(head.l1.bias), arr(head.l2.bias)],  # type: ignore[union-attr]
        encoder=dict(encoder_spec),
        residual=bool(head.residual),  # type: ignore[union-attr]
        meta=meta,
    )


# ---- the bank of encoded views -----------------------------------------------------------
@dataclass
class Bank:
    vectors: "np.ndarray"  # (R, D) raw encoder vectors
    labels: "np.ndarray"  # (R,) reference row
    clean: "np.ndarray"  # (R,) True for the unaugmented reference vector
    holdout: "np.ndarray"  # (H, D) photo-like views kept aside
    holdout_labels: "np.ndarray"
    seconds: float = 0.0

    @property
    def references(self) -> "np.ndarray":
        """(N, D) clean reference vectors, in reference order."""
        import numpy as np

        order = np.argsort(self.labels[self.clean], kind="stable")
        return self.vectors[self.clean][order]


def encode(encoder: "Encoder", images: "list[np.ndarray]") -> "np.ndarray":
    """Raw encoder vectors, from local features when the encoder works on them."""
    if hasattr(encoder, "encode_features"):
        from cover_id.features import extract_features

        return encoder.encode_features([extract_features(im) for im in images])  # type: ignore[attr-defined]
    return encoder.encode_images(images)


def _shrink(image: "np.ndarray", side: int) -> "np.ndarray":
    import cv2

    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    s = side / max(h, w)
    return cv2.resize(image, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)


def build_bank(
    encoder: "Encoder",
    load: "Callable[[int], np.ndarray]",
    n: int,
    clean: "np.ndarray | None",
    views: int,
    holdout: int,
    seed: int,
    show_progress: bool = False,
) -> Bank:
    """Encode every reference's views once.

    ``load(i)`` returns reference ``i`` (BGR); ``clean`` are the vectors the
    index holds for them (None: encode the loaded images). Every view comes
    from its own RNG seeded by (seed, reference, view), so the bank is the
    same whatever the order or batch size.
    """
    import numpy as np

    from cover_id.progress import progress
    from cover_id.synth import AugmentOptions, photo_augment
    from cover_id.verify import photo_view

    t0 = time.perf_counter()
    opts = AugmentOptions.train()
    vecs, labels, is_clean, hold, hold_labels = [], [], [], [], []
    with progress(n, "encoding views", show_progress) as advance:
        for i in range(n):
            image = load(i)
            small = _shrink(image, VIEW_SIDE)
            batch = [photo_augment(small, np.random.default_rng([seed, i, v]), 1.0, opts) for v in range(views)]
            batch += [photo_view(small, np.random.default_rng([seed, 7919, i, v])) for v in range(holdout)]
            if clean is None:
                batch.append(image)
            out = encode(encoder, batch)
            ref_vec = clean[i] if clean is not None else out[-1]
            vecs.append(ref_vec[None, :])
            vecs.append(out[:views])
            labels.extend([i] * (views + 1))
            is_clean.extend([True] + [False] * views)
            hold.append(out[views : views + holdout])
            hold_labels.extend([i] * holdout)
            advance()
    d = int(vecs[0].shape[1])
    return Bank(
        vectors=np.ascontiguousarray(np.vstack(vecs), dtype=np.float32),
        labels=np.asarray(labels, np.int64),
        clean=np.asarray(is_clean, bool),
        holdout=np.vstack(hold).astype(np.float32) if hold else np.zeros((0, d), np.float32),
        holdout_labels=np.asarray(hold_labels, np.int64),
        seconds=time.perf_counter() - t0,
    )


# ---- margins ---------------------------------------------------------------------------------
def retrieval_margins(refs: "np.ndarray", queries: "np.ndarray", labels: "np.ndarray") -> dict[str, Any]:
    """Cosine to the own reference minus the best other one, per query; plus top-1."""
    import numpy as np

    if not len(queries):
        return {"n": 0}
    sims = queries @ refs.T
    rows = np.arange(len(queries))
    own = sims[rows, labels].copy()
    sims[rows, labels] = -np.inf
    margin = own - sims.max(axis=1)
    q = np.percentile(margin, [10, 50, 90])
    return {
        "n": int(len(margin)),
        "median": round(float(q[1]), 4),
        "p10": round(float(q[0]), 4),
        "p90": round(float(q[2]), 4),
        "mean": round(float(margin.mean()), 4),
        "top1": round(float((margin > 0).mean()), 4),
    }


# ---- training ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    projection: "Projection"
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    epochs_done: int = 0
    kept_epoch: int = 0
    interrupted: bool = False
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def train_on_bank(
    bank: Bank,
    encoder_spec: dict[str, Any],
    cfg: TrainConfig,
    show_progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Fit the head on a bank; Ctrl-C stops early and still returns a usable head."""
    import numpy as np
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    d = int(bank.vectors.shape[1])
    head = make_head(d, cfg.hidden, seed=cfg.seed).to(device)
    sampler = KMSampler(bank.labels, cfg.k, cfg.m, seed=cfg.seed, clean=bank.clean)
    x_all = torch.from_numpy(bank.vectors).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, cfg.epochs * sampler.steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    losses: list[float] = []
    interrupted = False
    epochs_done = 0
    refs_t = torch.from_numpy(bank.references).to(device)
    hold_t = torch.from_numpy(bank.holdout).to(device)
    hold_y = np.asarray(bank.holdout_labels)

    def held_out_score() -> tuple[float, float]:
        """(top-1, mean margin) on the held-out views: picks the epoch to keep."""
        if not len(hold_y):
            return (0.0, 0.0)
        with torch.no_grad():
            m = retrieval_margins(head(refs_t).cpu().numpy(), head(hold_t).cpu().numpy(), hold_y)
        return (m["top1"], m["mean"])

    import copy

    best_score, best_state, best_epoch = held_out_score(), copy.deepcopy(head.state_dict()), 0

    from cover_id.progress import progress

    with progress(total, "training", show_progress) as advance:
        try:
            for epoch in range(cfg.epochs):
                run = []
                for rows, labels in sampler.epoch():
                    z = head(x_all[torch.from_numpy(rows).to(device)])
                    loss = supcon_loss(z, torch.from_numpy(labels).to(device), cfg.temperature)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    run.append(float(loss.detach()))
                    advance(info=f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(run):.3f}")
                losses.append(float(np.mean(run)))
                epochs_done = epoch + 1
                score = held_out_score()
                if score > best_score:
                    best_score, best_state, best_epoch = score, copy.deepcopy(head.state_dict()), epochs_done
        except KeyboardInterrupt:
            interrupted = True
    if cfg.keep_best:
        head.load_state_dict(best_state)
    head.eval()
    info = {
        **(meta or {}),
        "config": asdict(cfg),
        "classes": int(len(sampler.classes)),
        "bank_vectors": int(len(bank.vectors)),
        "epochs_done": epochs_done,
        "kept_epoch": best_epoch if cfg.keep_best else epochs_done,
        "interrupted": interrupted,
        "final_loss": round(losses[-1], 4) if losses else None,
        "in_dim": d,
        "out_dim": d,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    proj = head_to_projection(head, encoder_spec, info)
    refs = bank.references
    before = retrieval_margins(refs, bank.holdout, bank.holdout_labels)
    after = retrieval_margins(proj.apply(refs), proj.apply(bank.holdout), bank.holdout_labels) if len(bank.holdout) else {}
    proj.meta["margins"] = {"before": before, "after": after}
    return TrainResult(proj, losses, epochs_done, proj.meta["kept_epoch"], interrupted, before, after, time.perf_counter() - t0)


# ---- from a folder or an index ----------------------------------------------------------------
@dataclass
class TrainSource:
    encoder: "Encoder"
    spec: dict[str, Any]  # recorded in the head; compared when an index applies it
    n: int
    load: "Callable[[int], np.ndarray]"
    clean: "np.ndarray | None"
    describe: str


def source_from_index(index: Path, device: str | None = None) -> TrainSource:
    """The index's own encoder (with its fitted codebook) and its stored reference vectors."""
    from cover_id.errors import ImageError
    from cover_id.imageio import read_image
    from cover_id.index_store import IndexStore
    from cover_id.indexer import REF_MAX_SIDE

    store = IndexStore.open(Path(index))
    if store.size < 2:
        raise CoverIdError(f"index {index} holds {store.size} reference(s); training needs at least 2")
    encoder = store.create_encoder({"device": device} if device else None)

    def load(i: int) -> "np.ndarray":
        try:
            return read_image(store.image_path(i), max_side=REF_MAX_SIDE)
        except ImageError as exc:
            raise CoverIdError(f"reference image of '{store.records[i]['id']}' cannot be read ({exc}); was the refs folder moved?") from None

    return TrainSource(encoder, dict(store.encoder_spec), store.size, load, store.raw_embeddings, f"index {index}")


def source_from_refs(refs: Path, settings: dict[str, Any], show_progress: bool = False) -> TrainSource:
    """A folder of references: the encoder is built (and, for ``local``, fitted) exactly as `cover-id index` would."""
    import numpy as np

    from cover_id.config import DEFAULTS
    from cover_id.encoders import create_encoder, resolve_encoder_name
    from cover_id.errors import ImageError
    from cover_id.features import extract_features
    from cover_id.imageio import read_image
    from cover_id.indexer import REF_MAX_SIDE, load_catalog
    from cover_id.progress import progress

    s = {**DEFAULTS, **settings}
    catalog, _, _ = load_catalog(Path(refs), None)
    name, _ = resolve_encoder_name(s["encoder"], s["model"], s["pretrained"])
    encoder = create_encoder(name, model=s["model"], pretrained=s["pretrained"], device=s["device"], batch_size=s["batch_size"])
    paths = []
    for ref in catalog:
        if ref.path.is_file() and ref.path.stat().st_size > 0:
            paths.append(ref.path)
    clean = None
    if hasattr(encoder, "fit_features"):
        feats, ok = [], []
        with progress(len(paths), "reading references", show_progress) as advance:
            for p in paths:
                try:
                    feats.append(extract_features(read_image(p, max_side=REF_MAX_SIDE)))
                    ok.append(p)
                except ImageError:
                    pass
                advance()
        paths = ok
        if len(paths) < 2:
            raise CoverIdError(f"{refs}: training needs at least 2 readable reference images")
        encoder.fit_features(feats)  # type: ignore[attr-defined]
        clean = np.asarray(encoder.encode_features(feats), np.float32)  # type: ignore[attr-defined]
    elif len(paths) < 2:
        raise CoverIdError(f"{refs}: training needs at least 2 reference images")

    def load(i: int) -> "np.ndarray":
        return read_image(paths[i], max_side=REF_MAX_SIDE)

    spec = {**encoder.spec(), "dim": encoder.dim}
    return TrainSource(encoder, spec, len(paths), load, clean, f"folder {refs}")


def train(
    out: Path,
    refs: Path | None = None,
    index: Path | None = None,
    cfg: TrainConfig | None = None,
    settings: dict[str, Any] | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Bank, train, save ``out``; returns the result (margins before/after on held-out views)."""
    import torch

    from cover_id.projection import save_projection
    from cover_id.runtime import set_threads, thread_count

    cfg = cfg or TrainConfig()
    if (refs is None) == (index is None):
        raise CoverIdError("give exactly one of --refs DIR or --index INDEX")
    if cfg.epochs < 1:
        raise CoverIdError("--epochs must be at least 1")
    if cfg.views < 1:
        raise CoverIdError("--bank-views must be at least 1")
    set_threads((settings or {}).get("threads"))
    torch.set_num_threads(thread_count((settings or {}).get("threads")))
    if cfg.device != "cpu":
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise CoverIdError(f"device '{cfg.device}' is not available here; use --device cpu")
    src = source_from_index(index, cfg.device) if index is not None else source_from_refs(refs, settings or {}, show_progress)  # type: ignore[arg-type]
    try:
        bank = build_bank(src.encoder, src.load, src.n, src.clean, cfg.views, cfg.holdout, cfg.seed, show_progress)
    except KeyboardInterrupt:
        raise CoverIdError("interrupted while encoding views, before training started: nothing saved") from None
    meta = {"source": src.describe, "bank_seconds": round(bank.seconds, 1)}
    result = train_on_bank(bank, src.spec, cfg, show_progress, meta)
    save_projection(result.projection, Path(out))
    return result
